"""SMS text: the opt-out footer, and the length in characters and parts."""

from __future__ import annotations

import pytest

from dispatcher.sms.text import encoding_of, measure, with_footer

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
