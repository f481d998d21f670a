"""dispatcher/plan.py: what validate, send and the console's drafts share."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from dispatcher.definition.rendering import CampaignTemplates
from dispatcher.plan import audience_parts
from tests.factories import add_member

FOOTER = "لغو11"


def test_audience_parts_renders_for_every_reachable_member(engine: Engine) -> None:
    templates = CampaignTemplates(
        sms="{{ member.first_name }} عزیز، " + "ب" * 50,
        campaign={"slug": "s", "name": "n"},
        shop={"name": "فروشگاه"},
    )
    # "مریم عزیز، " is 11 characters: 11 + 50 + "\nلغو11" (6) = 67: one part.
    add_member(engine, "C1", first_name="مریم", mobile="+989121234567")
    # A longer name pushes the text over 70 characters: two parts.
    add_member(engine, "C2", first_name="عبدالرحمن", mobile="+989121234568")
    add_member(engine, "C3", mobile="+989121234569", sms_opt_in=False)
    add_member(engine, "C4", mobile=None)
    add_member(engine, "C5", mobile="+989121234570", mobile_invalid=True)
    add_member(engine, "C6", mobile="+989121234571", tags=["vip"])

    everyone = audience_parts(engine, templates, footer=FOOTER, audience=None)
    newsletter = audience_parts(engine, templates, footer=FOOTER, audience=["newsletter"])

    assert (everyone.members, everyone.parts) == (3, 4)
    assert (newsletter.members, newsletter.parts) == (2, 3)
