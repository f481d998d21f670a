"""The text of a promotional SMS as it is sent: the opt-out footer, its length in parts
(GSM 7-bit or UCS-2) and the limits. A pure adapter: no database, no campaign.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SmsLength:
    """How long a text is for the SMS centre.

    `characters` is what a person counts (code points); `units` what the encoding
    counts (septets for GSM-7, UTF-16 units for UCS-2); `parts` the SMS billed.
    """

    characters: int
    units: int
    encoding: Encoding
    parts: int

    def __str__(self) -> str:
        parts = "1 part" if self.parts == 1 else f"{self.parts} parts"
        return f"{self.characters} characters, {parts} ({self.encoding})"


def encoding_of(text: str) -> Encoding:
    """GSM-7 when every character has a GSM-7 form, UCS-2 otherwise."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        return "GSM-7"
    return "UCS-2"


def measure(text: str) -> SmsLength:
    """Characters, encoding units and SMS parts of `text` as it will be sent."""
    encoding = encoding_of(text)
    if encoding == "GSM-7":
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
        single, per_part = GSM7_SINGLE, GSM7_PART
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, per_part = UCS2_SINGLE, UCS2_PART
    if units == 0:
        parts = 0
    elif units <= single:
        parts = 1
    else:
        parts = math.ceil(units / per_part)
    return SmsLength(characters=len(text), units=units, encoding=encoding, parts=parts)


def with_footer(text: str, footer: str) -> str:
    """`text` with `footer` on its own last line (once: a text ending with it is kept).

    Trailing whitespace of the text is dropped; an empty footer adds nothing.
    """
    body = text.rstrip()
    footer = footer.strip()
    if not footer:
        return body
    if not body:
        return footer
    if body.splitlines()[-1].strip() == footer:
        return body
    return f"{body}\n{footer}"


def parts_with_footer(body: str, footer: str) -> int:
    """SMS parts of `body` as sent, with the footer."""
    return measure(with_footer(body, footer)).parts
