"""Members: CSV import (upsert by external_id), following the consent rules of
`dispatcher.audience.consent`. Its record check (`check_record`) and bulk write
(`upsert_members`) are also those of the shop's API (`dispatcher.api`):

- An opt-out through the dispatcher (unsubscribe link, one-click, SMS keyword, the SMS
  provider's blacklist) is *sticky*: it sets `Member.<channel>_optout_source`, and no
  import can undo it; only an explicit `subscribe` (or `resubscribe` from the
  unsubscribe page) does.
- An import can opt a member out (`0`) and back in (`1`) as long as the opt-out came
  from an import; it never sets the sticky source, since the shop's own profile owns
  that decision.
- Every actual change of consent, and only that, is recorded as a `ConsentEvent`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    Connection,
    RowMapping,
    Table,
    delete,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from dispatcher.audience.addresses import AddressKeys, SharedAddress, shared_addresses, with_keys
from dispatcher.audience.consent import CONSENT_COLUMNS
from dispatcher.audience.normalise import (
    clean_mobile,
    normalise_email,
    normalise_external_id,
    normalise_mobile,
    normalise_name,
    parse_opt_in,
    parse_tags,
)
from dispatcher.controlchars import CONTROL, strip_controls
from dispatcher.email.address import needs_smtputf8
from dispatcher.errors import InputError
from dispatcher.masking import mask_email, mask_text
from dispatcher.store.bulk import insert_rows, update_rows
from dispatcher.store.models import ConsentEvent, ConsentSource, Member, MemberTag, utcnow

__all__ = [
    "COLUMNS",
    "ImportReport",
    "MemberRecord",
    "Problem",
    "RowError",
    "check_record",
    "import_members",
    "normalise_email",
    "normalise_mobile",
    "upsert_members",
]

COLUMNS = (
    "external_id",
    "first_name",
    "last_name",
    "email",
    "mobile",
    "email_opt_in",
    "sms_opt_in",
    "tags",
)
MAX_EXTERNAL_ID_LENGTH = 64  # Member.external_id
_CLEANED = ("first_name", "last_name", "tags")  # control characters removed, with a warning
_CHUNK = 500  # ids per `IN (...)` on SQLite: well under its parameter limit

_MEMBER: Table = Member.__table__  # type: ignore[attr-defined]
_MEMBER_TAG: Table = MemberTag.__table__  # type: ignore[attr-defined]
_CONSENT_EVENT: Table = ConsentEvent.__table__  # type: ignore[attr-defined]

# channel -> (opt-in column, sticky opt-out source column)
_CONSENT_COLUMNS = CONSENT_COLUMNS


@dataclass(frozen=True)
class RowError:
    """One problem in an import file: where (physical line, column) and why.

    `line` is the line on which the record starts, counting the header as line 1 and
    every line break inside a quoted field. A reason never shows an address whole,
    only a masked form. `file` is the path as given to `import_members`.
    """

    line: int
    field: str
    reason: str
    external_id: str | None = None
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else f"line {self.line}"
        return f"{where}: {self.field}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did.

    `created + updated + unchanged` is the number of rows imported. `kept_opted_out`
    counts imported rows that asked to opt a member in on a channel that the member
    had left through the dispatcher (sticky opt-out); such a row is not an error, and
    is also counted in `updated` or `unchanged`. `rejected` lists every problem found;
    a rejected row is not imported, and a line may have several problems. `warnings`
    lists what was imported but changed (control characters removed from a name) or
    may not be sendable (an address with a non-ASCII local part).
    """

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_opted_out: int = 0
    rejected: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    shared: list[SharedAddress] = field(default_factory=list)  # warnings: families share

    @property
    def ok(self) -> bool:
        """True when nothing was rejected (the CLI exits non-zero otherwise)."""
        return not self.rejected


@dataclass(frozen=True)
class Problem:
    """What is wrong with one field of a record (`check_record`); the reason masks
    any address it shows."""

    field: str
    reason: str
    external_id: str | None = None


@dataclass
class MemberRecord:
    """A valid member record, ready to write: `values` are the stored forms, only for
    the columns given. `line` is where it came from (a CSV line, a batch index)."""

    line: int
    external_id: str
    values: dict[str, Any]


# --------------------------------------------------------------------------- import


def import_members(engine: Engine, path: Path, *, keys: AddressKeys | None = None) -> ImportReport:
    """Create or update members from a CSV file, matched by `external_id`.

    The file is UTF-8 (a BOM is accepted) with a header row naming some of the
    columns in `COLUMNS`, in any order; only `external_id` is required. A column the
    file does not have is left alone on existing members (new members get the
    defaults: no name, no address, opted in); a column it has is the truth:

    - `first_name`, `last_name`: whitespace collapsed; an empty cell clears the name.
    - `email`: validated and normalised; an empty cell clears the address.
    - `mobile`: normalised to E.164 (see `normalise_mobile`); an empty cell clears it.
      A changed mobile resets `mobile_invalid`.
    - `email_opt_in`, `sms_opt_in`: `1`, `0` or empty (= `1`). `0` opts the member
      out; `1` opts them back in unless they opted out through the dispatcher
      (counted in `kept_opted_out`). A new member simply starts with the value given.
    - `tags`: `;`-separated; replaces the member's tags (an empty cell removes them).

    Rows are rejected, with their line, column and reason, for: a missing, too long
    or duplicate `external_id` (a later row with the same id is rejected, the first
    is imported), an invalid email or mobile, a bad opt-in value, a tag too long, a
    control character in the `external_id`, or a number of fields different from the
    header's. Rows with only empty cells are skipped. Every other row is imported.
    An `external_id` is stored with ASCII digits (`normalise_external_id`); control
    characters in names and tags are removed, each such line reported in `warnings`.

    An unknown column in the header is reported as an error on line 1 (so the CLI
    exits non-zero) but does not stop the import: the known columns are imported.

    Raises `InputError` naming the file when it cannot be used at all: unreadable,
    empty, binary, not UTF-8, not CSV, without a header or an `external_id` column,
    or with a column named twice. Then nothing is written.

    All rows are written in one transaction: if the database fails, nothing is
    imported (the database error propagates). Existing members are read and written
    in bulk, so a file of 100,000 rows takes seconds.
    """
    report = ImportReport()
    rows = _parse(path, report)
    report.shared = shared_addresses(
        (row.line, row.external_id, row.values.get("email"), row.values.get("mobile"))
        for row in rows
    )
    if rows:
        upsert_members(engine, rows, report, keys)
    return report


def _parse(path: Path, report: ImportReport) -> list[MemberRecord]:
    """Read and validate the file; bad rows go to `report.rejected`."""
    name = str(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))

    def reject(line: int, column: str, reason: str, external_id: str | None = None) -> None:
        report.rejected.append(RowError(line, column, reason, external_id or None, name))

    def warn(line: int, column: str, reason: str, external_id: str | None = None) -> None:
        report.warnings.append(RowError(line, column, reason, external_id or None, name))

    records = _records(reader, name)
    header_line, header = next(records, (0, []))
    if not header:
        raise InputError(f"{name}: the file is empty")
    columns = [cell.strip().lower() for cell in header]
    _check_header(name, columns)
    for number, column in enumerate(columns, start=1):
        if column not in COLUMNS:
            reject(header_line, column or f"column {number}", "unknown column")
    index = {column: i for i, column in enumerate(columns) if column in COLUMNS}
    id_index = index["external_id"]

    rows: list[MemberRecord] = []
    first_seen: dict[str, int] = {}
    for line, cells in records:
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            external_id = cells[id_index].strip() if id_index < len(cells) else ""
            reject(line, "row", f"{len(cells)} fields, the header has {len(columns)}", external_id)
            continue
        warnings: list[Problem] = []
        record, problems = check_record(
            line, {column: cells[i] for column, i in index.items()}, first_seen, warnings=warnings
        )
        for problem in problems:
            reject(line, problem.field, problem.reason, problem.external_id)
        for problem in warnings:
            warn(line, problem.field, problem.reason, problem.external_id)
        if record is not None:
            rows.append(record)
    return rows


def check_record(
    position: int,
    cells: Mapping[str, str],
    first_seen: dict[str, int],
    *,
    at: str = "line",
    warnings: list[Problem] | None = None,
) -> tuple[MemberRecord | None, list[Problem]]:
    """Validate and normalise one member record: the rules of `import_members`, for
    every way members come in (a CSV row, a body of the shop's API).

    `cells` maps column names (of `COLUMNS`; others are ignored) to the text given;
    a column not given is left alone. `first_seen` maps the external ids already
    accepted to their position (`at` names it in the duplicate's reason: `line`,
    `index`), and is updated. Returns the record, or None with every problem found;
    what was accepted with a change (control characters removed, an address only a
    relay with SMTPUTF8 takes) goes to `warnings`.
    """
    problems: list[Problem] = []
    notes: list[Problem] = warnings if warnings is not None else []
    try:
        external_id = normalise_external_id(cells.get("external_id", ""))
    except ValueError as exc:
        return None, [Problem("external_id", str(exc))]
    if not external_id:
        problems.append(Problem("external_id", "missing"))
    elif len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        problems.append(Problem("external_id", f"longer than {MAX_EXTERNAL_ID_LENGTH} characters"))
    elif external_id in first_seen:
        reason = f"duplicate external_id (first {_AT[at]} {at} {first_seen[external_id]})"
        problems.append(Problem("external_id", reason, external_id))
    else:
        first_seen[external_id] = position
    values: dict[str, Any] = {}
    for column, cell in cells.items():
        if column == "external_id" or column not in COLUMNS:
            continue
        if column in _CLEANED and CONTROL.search(collapsed := " ".join(cell.split())):
            cell = strip_controls(collapsed)  # line breaks and tabs are only spaces
            notes.append(Problem(column, "control characters removed", external_id or None))
        try:
            values[column] = _convert(column, cell)
        except ValueError as exc:
            problems.append(Problem(column, f"{exc}{_shown(column, cell)}", external_id or None))
            continue
        if column == "email" and values[column] and needs_smtputf8(values[column]):
            notes.append(
                Problem(
                    column,
                    f"{mask_email(values[column])!r} has a non-ASCII local part: it is sent "
                    "only through a relay offering SMTPUTF8",
                    external_id or None,
                )
            )
    if problems:
        return None, problems
    return MemberRecord(position, external_id, values), []


_AT = {"line": "on", "index": "at"}


def _records(reader: Any, name: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line the record starts on, cells) for every non-blank record."""
    while True:
        line = reader.line_num + 1
        try:
            cells: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{name}:{line}: not valid CSV ({exc})") from None
        if cells:
            yield line, cells


def _read_text(path: Path) -> str:
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: UTF-16 text, not UTF-8; save it as 'CSV UTF-8'")
    if b"\x00" in data:
        raise InputError(f"{name}: not a CSV file (binary data)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{name}: not UTF-8 text (invalid byte on line {line}); save it as 'CSV UTF-8'"
        ) from None
    if not text.strip():
        raise InputError(f"{name}: the file is empty")
    return text


def _check_header(name: str, columns: list[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            raise InputError(f"{name}: the header names column {column!r} twice")
        seen.add(column)
    if "external_id" not in seen:
        hint = ""
        if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
            hint = " (are the columns separated by something other than commas?)"
        raise InputError(f"{name}: no external_id column in the header row{hint}")


def _convert(column: str, cell: str) -> Any:
    """A cell's stored value; raises ValueError with the reason."""
    if column in ("first_name", "last_name"):
        return normalise_name(cell)
    if column == "email":
        return normalise_email(cell) if cell.strip() else None
    if column == "mobile":
        return normalise_mobile(cell) if cell.strip() else None
    if column in ("email_opt_in", "sms_opt_in"):
        return parse_opt_in(cell)
    return parse_tags(cell)


def _shown(column: str, cell: str) -> str:
    """The masked bad value, for a reason: ` ('a***@example.com')`."""
    if column == "email":
        return f" ({mask_email(cell)!r})"
    if column == "mobile":
        return f" ({mask_text(clean_mobile(cell))!r})"
    return ""


def upsert_members(
    engine: Engine,
    rows: Sequence[MemberRecord],
    report: ImportReport,
    keys: AddressKeys | None = None,
) -> None:
    """Write valid records (from `check_record`) in one transaction, in bulk, with
    the import's consent rules; add to the report's counts. With `keys`, members get
    their address keys now (else at the next expansion)."""
    present = {column for row in rows for column in row.values}
    now = utcnow()
    with engine.begin() as conn:
        _lock_for_writing(conn)
        existing = _load_members(conn, [row.external_id for row in rows])
        old_tags = (
            _load_tags(conn, [m["id"] for m in existing.values()]) if "tags" in present else {}
        )
        inserts: list[dict[str, Any]] = []
        new_tags: dict[str, tuple[str, ...]] = {}
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # by changed columns
        tag_replacements: dict[int, tuple[str, ...]] = {}  # member id -> tags to insert
        replaced_tags: list[int] = []  # existing members whose tags are deleted first
        events: list[dict[str, Any]] = []
        for row in rows:
            member = existing.get(row.external_id)
            if member is None:
                inserts.append(with_keys(_new_member(row, now), keys))
                if row.values.get("tags"):
                    new_tags[row.external_id] = row.values["tags"]
                report.created += 1
                continue
            changes, member_events, kept = _changes(member, row.values, now)
            with_keys(changes, keys)
            events.extend(member_events)
            report.kept_opted_out += kept
            if "tags" in row.values:
                tags, shown = row.values["tags"], ";".join(row.values["tags"])
                if shown != member["tags"] or set(tags) != old_tags.get(member["id"], set()):
                    changes["tags"] = shown
                    tag_replacements[member["id"]] = tags
                    replaced_tags.append(member["id"])
            if changes:
                changes["updated_at"] = now
                columns = tuple(sorted(changes))
                params = {**changes, "id": member["id"]}
                updates.setdefault(columns, []).append(params)
                report.updated += 1
            else:
                report.unchanged += 1

        if inserts:
            insert_rows(conn, _MEMBER, inserts)  # RETURNING is 5x slower on PostgreSQL
        for condition in _among(conn, _MEMBER.c.external_id, list(new_tags)):
            stmt = sa.select(_MEMBER.c.id, _MEMBER.c.external_id).where(condition)
            for member_id, external_id in conn.execute(stmt):
                tag_replacements[member_id] = new_tags[external_id]
        for columns, params_list in updates.items():
            update_rows(conn, _MEMBER, columns, params_list)
        if tag_replacements:
            for condition in _among(conn, _MEMBER_TAG.c.member_id, replaced_tags):
                conn.execute(delete(_MEMBER_TAG).where(condition))
            tag_rows = [
                {"member_id": member_id, "tag": tag}
                for member_id, tags in tag_replacements.items()
                for tag in tags
            ]
            if tag_rows:
                insert_rows(conn, _MEMBER_TAG, tag_rows)
        if events:
            insert_rows(conn, _CONSENT_EVENT, events)


def _lock_for_writing(conn: Connection) -> None:
    """Take the write lock up front, so no opt-out can slip in between read and write.

    On PostgreSQL the member rows are locked as they are read (`FOR NO KEY UPDATE`).
    SQLite has one writer at a time, and its reads outside a write transaction are not
    part of any: `BEGIN IMMEDIATE` takes the write lock before the first read (waiting
    for it up to the busy timeout).
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_LOADED_COLUMNS = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "mobile",
    "email_opt_in",
    "sms_opt_in",
    "email_optout_source",
    "sms_optout_source",
    "tags",
)


def _load_members(conn: Connection, external_ids: Sequence[str]) -> dict[str, RowMapping]:
    """The members with these external ids, locked (PostgreSQL) until the commit."""
    found: dict[str, RowMapping] = {}
    columns = [_MEMBER.c[name] for name in _LOADED_COLUMNS]
    for condition in _among(conn, _MEMBER.c.external_id, external_ids):
        # FOR NO KEY UPDATE: blocks opt-outs, not the inserts that reference members;
        # in id order, like any other writer that locks several members should.
        stmt = (
            sa.select(*columns)
            .where(condition)
            .order_by(_MEMBER.c.id)
            .with_for_update(key_share=True)
        )
        for member in conn.execute(stmt).mappings():
            found[member["external_id"]] = member
    return found


def _load_tags(conn: Connection, member_ids: Sequence[int]) -> dict[int, set[str]]:
    tags: dict[int, set[str]] = {}
    for condition in _among(conn, _MEMBER_TAG.c.member_id, member_ids):
        stmt = sa.select(_MEMBER_TAG.c.member_id, _MEMBER_TAG.c.tag).where(condition)
        for member_id, tag in conn.execute(stmt):
            tags.setdefault(member_id, set()).add(tag)
    return tags


def _new_member(row: MemberRecord, now: datetime) -> dict[str, Any]:
    values = row.values
    return {
        "external_id": row.external_id,
        "first_name": values.get("first_name", ""),
        "last_name": values.get("last_name", ""),
        "email": values.get("email"),
        "mobile": values.get("mobile"),
        "email_opt_in": values.get("email_opt_in", True),
        "sms_opt_in": values.get("sms_opt_in", True),
        "email_optout_source": None,
        "sms_optout_source": None,
        "mobile_invalid": False,
        "tags": ";".join(values.get("tags", ())),
        "updated_at": now,
    }


def _changes(
    member: RowMapping, values: dict[str, Any], now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """(column changes, consent events, 1 if a sticky opt-out was kept else 0)."""
    changes: dict[str, Any] = {}
    for column in ("first_name", "last_name", "email", "mobile"):
        if column in values and values[column] != member[column]:
            changes[column] = values[column]
    if "mobile" in changes:
        changes["mobile_invalid"] = False
    events: list[dict[str, Any]] = []
    kept = 0
    for channel, (opt_column, source_column) in _CONSENT_COLUMNS.items():
        wanted = values.get(opt_column)
        if wanted is None or wanted == member[opt_column]:
            continue
        if wanted and member[source_column] is not None:
            kept = 1  # opted out through the dispatcher: an import cannot undo it
            continue
        changes[opt_column] = wanted
        events.append(
            {
                "member_id": member["id"],
                "channel": channel.value,
                "opted_in": wanted,
                "source": ConsentSource.IMPORT.value,
                "at": now,
            }
        )
    return changes, events, kept


def _among(conn: Connection, column: Any, values: Sequence[Any]) -> Iterator[Any]:
    """Conditions `column IN values` that together cover `values`, for bulk reads.

    SQLite gets chunks of literal lists (it always uses the index). PostgreSQL gets one
    array parameter, unnested: a long `IN` list repeated with the same shape becomes a
    prepared statement whose generic plan scans the table and searches the list for
    every row, which takes minutes on 100,000 members.
    """
    if not values:
        return
    if conn.dialect.name == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        yield column.in_(sa.select(sa.func.unnest(array)).scalar_subquery())
        return
    for start in range(0, len(values), _CHUNK):
        yield column.in_(values[start : start + _CHUNK])
