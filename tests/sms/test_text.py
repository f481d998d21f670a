"""SMS text: the opt-out footer, and the length in characters and parts."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from dispatcher.definition.rendering import CampaignTemplates
from dispatcher.sms.text import audience_parts, encoding_of, measure, with_footer
from tests.factories import add_member

FOOTER = "لغو11"


def test_the_footer_goes_on_its_own_last_line() -> None:
    assert with_footer("حراج یلدا شروع شد  \n", FOOTER) == "حراج یلدا شروع شد\nلغو11"


def test_the_footer_is_not_added_twice() -> None:
    assert with_footer("حراج یلدا\nلغو11", FOOTER) == "حراج یلدا\nلغو11"
    assert with_footer("حراج یلدا\n  لغو11  ", FOOTER) == "حراج یلدا\n  لغو11"


def test_an_empty_footer_adds_nothing() -> None:
    assert with_footer("Yalda sale\n", "") == "Yalda sale"


def test_one_persian_letter_makes_the_text_ucs2() -> None:
    assert encoding_of("Yalda sale, 40% off") == "GSM-7"
    assert encoding_of("Yalda sale لغو11") == "UCS-2"


@pytest.mark.parametrize(
    ("length", "parts"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_persian_text_is_70_for_one_part_and_67_per_part_when_split(
    length: int, parts: int
) -> None:
    result = measure("ب" * length)
    assert (result.encoding, result.characters, result.units, result.parts) == (
        "UCS-2",
        length,
        length,
        parts,
    )


@pytest.mark.parametrize(
    ("length", "parts"), [(160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_latin_text_is_160_for_one_part_and_153_per_part_when_split(
    length: int, parts: int
) -> None:
    result = measure("a" * length)
    assert (result.encoding, result.parts) == ("GSM-7", parts)


def test_gsm7_extension_characters_count_double() -> None:
    text = "a" * 150 + "{}[]€"  # 155 characters, 160 septets: still one part
    result = measure(text)
    assert (result.characters, result.units, result.parts) == (155, 160, 1)
    assert measure(text + "^").parts == 2


def test_an_emoji_takes_two_ucs2_units() -> None:
    result = measure("🎉" * 35)
    assert (result.encoding, result.characters, result.units, result.parts) == (
        "UCS-2",
        35,
        70,
        1,
    )
    assert measure("🎉" * 35 + "!").parts == 2


def test_an_empty_text_is_no_sms() -> None:
    assert measure("").parts == 0


def test_the_length_reads_as_a_sentence() -> None:
    assert str(measure("ب" * 71)) == "71 characters, 2 parts (UCS-2)"
    assert str(measure("hello")) == "5 characters, 1 part (GSM-7)"


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
