"""dispatcher/channels.py: one spec per channel, the columns it names real."""

from __future__ import annotations

import pytest

from dispatcher.channels import SPECS, spec_of
from dispatcher.store.models import Channel, Member


@pytest.mark.parametrize("name", list(SPECS))
def test_every_column_a_spec_names_is_a_member_column(name: str) -> None:
    spec = spec_of(name)
    columns = set(Member.__table__.c.keys())  # type: ignore[attr-defined]
    named = {spec.address, spec.opt_in, spec.optout_source, spec.key, spec.invalid} - {None}
    assert named <= columns


def test_every_channel_has_a_spec() -> None:
    assert set(SPECS) == {str(c) for c in Channel}


def test_the_send_time_check_gives_the_reason_a_member_is_unreachable() -> None:
    member = Member(external_id="C1", email="a@example.com", mobile="+989121234567")
    assert spec_of(Channel.EMAIL).unreachable(member) is None
    assert spec_of(Channel.SMS).unreachable(member) is None
    member.mobile_invalid = True
    assert spec_of(Channel.SMS).unreachable(member) == "mobile invalid"
    member.email_opt_in = False
    assert spec_of(Channel.EMAIL).unreachable(member) == "opted out"
    assert spec_of(Channel.EMAIL).unreachable(Member(external_id="C2")) == "no email address"
    assert spec_of(Channel.SMS).unreachable(Member(external_id="C2")) == "no mobile number"
