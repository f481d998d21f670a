"""The dispatcher's error tree. Transient vs permanent is a type, not a string."""

from __future__ import annotations


class DispatcherError(Exception):
    """Base class for every error the dispatcher raises on purpose."""


class ConfigurationError(DispatcherError):
    """Raised when a setting is missing or invalid."""


class InputError(DispatcherError):
    """Raised when a file given by a person (CSV, campaign) cannot be used at all."""


class CampaignError(InputError):
    """Raised when a campaign file is invalid; carries every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class NotFoundError(DispatcherError):
    """Raised when a campaign, member or delivery named by a person does not exist."""


class ControlError(DispatcherError):
    """Raised when a campaign cannot make the change asked (resume a cancelled one...)."""


class SchemaError(DispatcherError):
    """Raised when the database schema is behind the code (run `dispatcher db upgrade`)."""


class TokenError(DispatcherError):
    """Raised when an unsubscribe token is malformed, tampered with or unknown."""


class DeliveryError(DispatcherError):
    """Base class for a failed attempt to hand a message to a transport."""

    def __init__(self, message: str, *, code: int | None = None, status: str | None = None) -> None:
        self.code = code
        self.status = status  # the enhanced status code (RFC 3463), e.g. "5.1.1"
        super().__init__(message)


class TransientDeliveryError(DeliveryError):
    """Raised when a send may succeed later (4xx, timeout, dropped connection)."""


class PermanentDeliveryError(DeliveryError):
    """Raised when a send will never succeed for this recipient (5xx, invalid receptor)."""


class InvalidRecipientError(PermanentDeliveryError):
    """Raised when the relay refuses the mailbox or its domain for good (a hard bounce:
    5.1.x, or a bare 550/551/553 naming an unknown user)."""


class RateLimiterUnavailable(TransientDeliveryError):
    """Raised when the shared rate limiter's Redis cannot be reached (nothing was sent)."""
