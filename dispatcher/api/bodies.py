"""The request bodies of the shop's API (pydantic), and how they become the import's
cells: a member's fields go through `dispatcher.audience.members.check_record`, the
one set of rules for every way members come in.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from dispatcher.audience.members import Problem
from dispatcher.store.models import Channel

MAX_BATCH = 1000  # members per `POST /api/v1/members/batch`

Text = Annotated[StrictStr | None, Field(max_length=1000)]


class MemberFields(BaseModel):
    """A member's fields; a field left out is left alone, `null` or `""` clears it."""

    model_config = ConfigDict(extra="forbid")

    first_name: Text = None
    last_name: Text = None
    email: Text = Field(default=None, description="validated and normalised")
    mobile: Text = Field(default=None, description="an Iranian mobile, stored in E.164")
    email_opt_in: StrictBool = Field(
        default=True,
        description="false opts out; true opts back in unless the member "
        "opted out through the dispatcher (sticky)",
    )
    sms_opt_in: StrictBool = True
    tags: list[Annotated[StrictStr, Field(pattern=r"^[^;]*$")]] | None = Field(
        default=None, description="replaces the member's tags; no ';' in a tag"
    )

    def cells(self, external_id: str) -> dict[str, str]:
        """The fields given, as the cells of an import row."""
        cells = {"external_id": external_id}
        for name in self.model_fields_set:
            value: Any = getattr(self, name)
            if isinstance(value, bool):
                cells[name] = "1" if value else "0"
            elif isinstance(value, list):
                cells[name] = ";".join(value)
            else:
                cells[name] = value or ""
        return cells


class BatchMember(MemberFields):
    """One record of a batch: the member's fields and its `external_id`."""

    external_id: StrictStr = ""


class BatchBody(BaseModel):
    """`{"members": [...]}`: each record is checked on its own (its problems do not
    stop the others)."""

    model_config = ConfigDict(extra="forbid")

    members: list[Any] = Field(max_length=MAX_BATCH)


class ConsentBody(BaseModel):
    """`{"channel": "email", "opt_in": false}`"""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    opt_in: StrictBool


def problems(exc: ValidationError, whole: str = "body") -> list[Problem]:
    """A pydantic error as the import's problems: field and reason, never the value;
    `whole` names the field of an error about the whole object."""
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        location = [str(part) for part in error["loc"]]
        found.append(Problem(".".join(location) or whole, error["msg"]))
    return found
