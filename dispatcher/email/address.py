"""Email addresses as they go on the wire: the domain IDNA-encoded (`münchen.de` ->
`xn--mnchen-3ya.de`), the local part as it is (non-ASCII needs SMTPUTF8)."""

from __future__ import annotations

from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from dispatcher.errors import MessageError

__all__ = ["needs_smtputf8", "wire_address"]


def needs_smtputf8(address: str) -> bool:
    """True when an address's local part is not ASCII: only a relay offering SMTPUTF8
    takes it (an international domain alone is sent IDNA-encoded)."""
    return not address.rpartition("@")[0].isascii()


def wire_address(address: str) -> str:
    """`address` with its domain in ASCII (IDNA); unchanged when it is ASCII already."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        raise MessageError("not an email address")
    return f"{local}@{_ascii_domain(domain)}"


@lru_cache(maxsize=1024)
def _ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).ascii_domain
    except EmailNotValidError as exc:
        raise MessageError(f"the address's domain cannot be IDNA-encoded: {exc}") from None
