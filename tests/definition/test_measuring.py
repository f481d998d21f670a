"""`[tracking]`, `[sms] track_links` and `[ab]` in campaign files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.definition.campaign import CampaignSpec, load_campaign
from dispatcher.definition.measuring import AbSpec, parse_duration
from dispatcher.errors import CampaignError
from tests.factories import write_campaign


def with_tables(tmp_path: Path, extra: str, **options: object) -> Path:
    path = write_campaign(tmp_path / "c", **options)  # type: ignore[arg-type]
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(CampaignError) as caught:
        load_campaign(path)
    return caught.value.problems


def test_clicks_are_tracked_by_default_and_sms_links_are_not(tmp_path: Path) -> None:
    spec = load_campaign(write_campaign(tmp_path / "c"))
    assert spec.track_clicks and not spec.sms_track_links and spec.ab is None
    off = load_campaign(with_tables(tmp_path, "[tracking]\nclicks = false\n"))
    assert not off.track_clicks


def test_an_ab_table_is_read_and_survives_the_frozen_spec(tmp_path: Path) -> None:
    path = with_tables(
        tmp_path,
        '[ab]\nsubjects = ["یک", "دو", "سه"]\ntest_share = 0.3\ndecide_after = "90m"\n',
    )
    spec = load_campaign(path)
    assert spec.ab == AbSpec(subjects=["یک", "دو", "سه"], test_share=0.3, decide_after="90m")
    assert spec.ab.names == ["A", "B", "C"] and spec.ab.decide_after_seconds == 5400
    assert CampaignSpec.from_json(spec.to_json()) == spec


def test_a_wrong_ab_table_names_each_field_and_reason(tmp_path: Path) -> None:
    path = with_tables(
        tmp_path,
        '[ab]\nsubjects = ["یک", "دو"]\nfroms = ["not an address"]\ntest_share = 1.5\n'
        'decide_after = "soon"\nwinner_by = "opens"\ncolour = 1\n',
    )
    found = "\n".join(problems(path))
    for field in ("ab.froms", "ab.test_share", "ab.decide_after", "ab.winner_by", "ab.colour"):
        assert f"{path}: {field}: " in found
    assert "'soon' is not a duration" in found


@pytest.mark.parametrize("subjects", ['["تنها"]', '["1", "2", "3", "4", "5"]', '"یک"'])
def test_ab_needs_two_to_four_subjects(tmp_path: Path, subjects: str) -> None:
    found = problems(with_tables(tmp_path, f"[ab]\nsubjects = {subjects}\n"))
    assert any("ab.subjects: required: a list of 2 to 4 subject lines" in p for p in found)


def test_ab_needs_the_email_channel(tmp_path: Path) -> None:
    path = with_tables(tmp_path, '[ab]\nsubjects = ["a", "b"]\n', channels=("sms",))
    assert any('ab: an A/B test needs the "email" channel' in p for p in problems(path))


def test_durations() -> None:
    assert [parse_duration(t) for t in ("45s", "30m", "2h", "1d")] == [45, 1800, 7200, 86400]
    with pytest.raises(ValueError):
        parse_duration("2 hours")


def test_validate_measures_an_sms_with_its_links_as_click_links(tmp_path: Path) -> None:
    body = "ی" * 40 + " https://s.example/a"
    plain = write_campaign(tmp_path / "plain", channels=("sms",), sms=body)
    assert load_campaign(plain, sms_footer="", sms_max_parts=1).sms is not None
    tracked = with_tables(tmp_path, "track_links = true\n", channels=("sms",), sms=body)
    with pytest.raises(CampaignError) as caught:
        load_campaign(tracked, sms_footer="", sms_max_parts=1)
    assert any(
        "2 parts (footer included), over SMS_MAX_PARTS (1)" in p for p in caught.value.problems
    )
