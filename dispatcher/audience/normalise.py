"""Normalisation of the values people type: mobiles, emails, names, tags, opt-in flags.

Every function returns the stored form or raises `ValueError` with a reason meant for a
person. A reason never contains the value itself (it may be personal data); callers
that want to show the value add a masked form (see `dispatcher.masking`).
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
from phonenumbers import PhoneNumber, PhoneNumberType

from dispatcher.controlchars import find_control

IRAN_COUNTRY_CODE = 98
MAX_TAG_LENGTH = 64  # MemberTag.tag

# Persian (U+06F0..) and Arabic-Indic (U+0660..) digits, as typed on Persian keyboards.
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
# What people put between digits: spaces of every kind, dashes, brackets, dots, slashes,
# and the invisible direction marks that copying from right-to-left text brings along.
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—()\[\]./\u200c\u200d\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_PHONE = re.compile(r"\+?\d+")
_MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
# The usual shapes of an Iranian mobile, whose national number needs no parsing.
_IR_MOBILE_SHAPE = re.compile(r"(?:\+98|0098|98|0)?(9\d{9})")
# A plain ASCII address (dot-atom local part, no quotes, no display name).
_MAX_EMAIL_BYTES = 254  # RFC 3696 erratum 1690, as email_validator checks it
_PLAIN_EMAIL = re.compile(r"([A-Za-z0-9._%+\-]{1,64})@([A-Za-z0-9.\-]{1,120})")


def to_ascii_digits(text: str) -> str:
    """Replace Persian and Arabic-Indic digits by ASCII ones (`۰۹۱۲` -> `0912`)."""
    return text.translate(_DIGITS)


def clean_mobile(raw: str) -> str:
    """The digits (and a leading `+`) of a typed phone number, separators removed.

    Not validated: `normalise_mobile` does that. Also the form to mask in a report.
    """
    return _SEPARATORS.sub("", to_ascii_digits(raw))


def normalise_mobile(raw: str) -> str:
    """Return an Iranian mobile number in E.164 form (`+989121234567`).

    Accepted forms, with Persian or Arabic-Indic digits as well as ASCII ones, and any
    spaces, dashes, dots or brackets between them:

    - national: `09121234567`, and without the trunk zero `9121234567`;
    - international: `+98 912 123 4567`, `0098 912 123 4567`, and `98 912 123 4567`
      (twelve digits starting with 98 cannot be a national number, so they are read
      as the country code followed by the number); `+98 0912...` is accepted too.

    Raises `ValueError` with a reason for anything else: letters, a number that is not
    Iranian (the shop sends SMS to Iranian numbers only), an Iranian landline or other
    non-mobile number, or a number with the wrong number of digits.
    """
    text = clean_mobile(raw)
    if not text:
        raise ValueError("empty mobile number")
    if not _PHONE.fullmatch(text):
        raise ValueError("not a phone number (only digits, spaces, dashes and a leading +)")
    shape = _IR_MOBILE_SHAPE.fullmatch(text)
    if shape:  # fast path, same result as parse(): imports have many of these
        number = PhoneNumber(country_code=IRAN_COUNTRY_CODE, national_number=int(shape[1]))
    else:
        try:
            number = phonenumbers.parse(text, "IR")
        except phonenumbers.NumberParseException as exc:
            raise ValueError("not a valid Iranian mobile number") from exc
    if number.country_code != IRAN_COUNTRY_CODE:
        raise ValueError(f"not an Iranian number (country code +{number.country_code})")
    kind = phonenumbers.number_type(number)  # UNKNOWN when the number is not valid
    if kind in _MOBILE_TYPES:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == PhoneNumberType.FIXED_LINE:
        raise ValueError("a landline number, not a mobile number")
    if kind == PhoneNumberType.UNKNOWN:
        raise ValueError("not a valid Iranian mobile number")
    raise ValueError("not a mobile number")


def normalise_email(raw: str) -> str:
    """Return the normalised form of an email address (`Ali@Gmail.COM` -> `Ali@gmail.com`).

    Syntax only: the domain is not looked up. Raises `ValueError` with the reason.
    """
    text = raw.strip()
    if not text:
        raise ValueError("empty email address")
    plain = _PLAIN_EMAIL.fullmatch(text)
    if plain and DOT_ATOM_TEXT.fullmatch(plain[1]):
        # Fast path for the common case; same result as validate_email(), whose
        # costly part (the domain's IDNA checks) is then done once per domain.
        local, domain = plain[1], _normalise_domain(plain[2])
        if domain is not None and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES:
            address = f"{local}@{domain}"
            if len(address.encode()) <= _MAX_EMAIL_BYTES:
                return address
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


@lru_cache(maxsize=4096)
def _normalise_domain(domain: str) -> str | None:
    """The normalised form of an email domain, or None if it is not valid."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None


# Invisible marks that copying from right-to-left text brings along: never part of an id.
_MARKS = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def normalise_external_id(raw: str) -> str:
    """The stored form of an external_id, at import and wherever one is looked up:
    trimmed, Persian and Arabic-Indic digits as ASCII (`M۲۰۱۰` -> `M2010`), without
    invisible direction marks. Raises `ValueError` for a control character, and for a
    `/` (a path separator: the API's `/members/{id}` could not reach the member)."""
    text = _MARKS.sub("", to_ascii_digits(raw)).strip()
    found = find_control(text)
    if found:
        raise ValueError(f"a control character ({found}) in the id")
    if "/" in text:
        raise ValueError("a '/' in the id, which the API's /members/{id} cannot reach")
    return text


def external_id_forms(typed: str) -> list[str]:
    """What to look an id typed by a person up by: its normalised form, and the form as
    typed (for rows imported before ids were normalised)."""
    try:
        normalised = normalise_external_id(typed)
    except ValueError:
        return [typed]
    return list(dict.fromkeys((normalised, typed.strip())))


def normalise_name(raw: str) -> str:
    """Trim a name and collapse runs of whitespace (line breaks included) to one space."""
    return " ".join(raw.split())


def parse_opt_in(raw: str) -> bool:
    """Read an opt-in cell: `1` is True, `0` is False, an empty cell is True.

    Persian and Arabic-Indic `1`/`0` are read like ASCII ones; anything else, `true`
    and `yes` included, raises `ValueError`.
    """
    text = to_ascii_digits(raw.strip())
    if text in ("", "1"):
        return True
    if text == "0":
        return False
    shown = f" (got {raw.strip()!r})" if len(raw.strip()) <= 8 else ""
    raise ValueError(f"must be 1, 0 or empty{shown}")


def parse_tags(raw: str) -> tuple[str, ...]:
    """Split a `;`-separated tags cell: trimmed, empties dropped, duplicates dropped.

    Raises `ValueError` for a tag longer than the database allows.
    """
    tags: dict[str, None] = {}
    for part in raw.split(";"):
        tag = " ".join(part.split())
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"a tag is longer than {MAX_TAG_LENGTH} characters")
        tags[tag] = None
    return tuple(tags)
