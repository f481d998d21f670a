"""The dispatcher's error tree. Transient vs permanent is a type, not a string."""

from __future__ import annotations


class DispatcherError(Exception):
    """Base class for every error the dispatcher raises on purpose."""


class ConfigurationError(DispatcherError):
    """Raised when a setting is missing or invalid."""


class RelayUnavailable(DispatcherError):
    """Raised when the SMTP relay cannot be reached, or refuses STARTTLS or our AUTH."""


class InputError(DispatcherError):
    """Raised when a file given by a person (CSV, campaign) cannot be used at all."""


class CampaignError(InputError):
    """Raised when a campaign file is invalid; carries every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class EmptyAudienceError(DispatcherError):
    """Raised when a campaign would be recorded for no one (nothing is recorded)."""


class NotFoundError(DispatcherError):
    """Raised when a campaign, member or delivery named by a person does not exist."""


class ControlError(DispatcherError):
    """Raised when a campaign cannot make the change asked (resume a cancelled one...)."""


class SchemaError(DispatcherError):
    """Raised when the database schema is behind the code (run `dispatcher db upgrade`)."""


class TokenError(DispatcherError):
    """Raised when an unsubscribe token is malformed, tampered with or unknown."""


class DeliveryError(DispatcherError):
    """Base class for a failed attempt to hand a message to a transport.

    `repeated`: True on the copies of one provider call's failure that the other
    messages of the call (of the same campaign) raise: the call counts once towards
    the error storm, not once per message it carried.
    """

    repeated = False

    def __init__(self, message: str, *, code: int | None = None, status: str | None = None) -> None:
        self.code = code
        self.status = status  # the enhanced status code (RFC 3463), e.g. "5.1.1"
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Raised when a send may succeed later (4xx, timeout, dropped connection)."""


class PermanentDeliveryError(DeliveryError):
    """Raised when a send will never succeed for this recipient (5xx, invalid receptor)."""


class ThrottledError(TransientDeliveryError):
    """Raised when the provider asks us to slow down (SMTP 421/450/451/454, Kavenegar 451)."""


class InvalidRecipientError(PermanentDeliveryError):
    """Raised when the recipient's address or number will never take a message."""


class AccountError(DeliveryError):
    """Raised when the provider refuses our account (no credit, key refused, disabled):
    nothing goes out on that channel until a person acts."""

    def __init__(self, message: str, *, code: int | None = None, problem: str = "") -> None:
        self.problem = problem or "the account cannot send"
        super().__init__(message, code=code)


class MessageError(PermanentDeliveryError):
    """Raised when a message cannot be built or sent as it is (a control character in
    a header, an address the relay cannot take): this delivery fails, with the reason."""


class RenderError(PermanentDeliveryError):
    """Raised when a campaign's template cannot render a message for a member (an
    error in the template, a limit passed, no visible unsubscribe link)."""


class StyleError(RenderError):
    """Raised when a campaign's `<style>` rules cannot be inlined at compile time;
    `line`: the line of the `<style>` in the HTML file."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


class RateLimiterUnavailable(TransientDeliveryError):
    """Raised when the shared rate limiter's Redis cannot be reached (nothing was sent)."""
