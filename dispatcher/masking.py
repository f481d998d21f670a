"""Masked forms of personal data, for log lines, reports and web pages.

A masked value lets a person recognise *which* address is meant without showing it
whole: `mask_email("ali.rezaei@gmail.com")` is `a***@gmail.com`,
`mask_mobile("+989121234567")` is `+98912***4567`. None of these functions raises;
each accepts any string, including one that is not a valid address at all.
"""

from __future__ import annotations

import re

MASK = "***"

_E164 = re.compile(r"\+\d{8,15}")


def mask_text(value: str) -> str:
    """Mask an arbitrary string: its first two and last two characters at most.

    `0912123456` -> `09***56`; a value shorter than eight characters keeps only its
    first two (`0912` -> `09***`), and one of three characters or fewer keeps nothing.
    """
    value = value.strip()
    if len(value) <= 3:
        return MASK
    if len(value) < 8:
        return value[:2] + MASK
    return value[:2] + MASK + value[-2:]


def mask_email(addr: str) -> str:
    """Mask an email address: the first character of the local part and the domain.

    `ali.rezaei@gmail.com` -> `a***@gmail.com`. A string without an `@` is masked
    with `mask_text`.
    """
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at:
        return mask_text(addr)
    return local[:1] + MASK + "@" + domain


def mask_mobile(e164: str) -> str:
    """Mask a phone number in E.164 form: country code and operator prefix, last four.

    `+989121234567` -> `+98912***4567`; a number shorter than eleven digits keeps
    less (`+4420123456` -> `+44***56`). Anything that is not E.164 (`+` and 8 to 15
    digits) is masked with `mask_text`.
    """
    e164 = e164.strip()
    if not _E164.fullmatch(e164):
        return mask_text(e164)
    if len(e164) >= 12:
        return e164[:6] + MASK + e164[-4:]
    return e164[:3] + MASK + e164[-2:]
