"""Kavenegar: the official client made sound (a timeout on every call, one session, the
API key never in a log or traceback), its answers mapped onto the error tree
(throttled, transient, account, invalid recipient, rejected), and the SMS transport
built on it. README: "SMS".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from kavenegar import KavenegarAPI
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from dispatcher.errors import (
    AccountError,
    DeliveryError,
    InvalidRecipientError,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from dispatcher.sms.transport import SmsResult

if TYPE_CHECKING:
    from dispatcher.settings import Settings

DEFAULT_BASE_URL = "https://api.kavenegar.com"
REDACTED = "***"

TRANSIENT_CODES = frozenset({409, 451})
SLOW_DOWN_CODES = frozenset({451})  # "too many calls": the shared rate is halved
ACCOUNT_CODES = frozenset({401, 403, 418})
INVALID_RECEPTOR = 411
UNKNOWN_MESSAGE = 100  # status of a messageid / localid Kavenegar does not know
STATUS_BATCH = 500  # messageids per sms/status call (Kavenegar's limit)
RECEIVE_PAGE = 100  # messages per sms/receive answer at most
MAX_RECEPTORS = 200  # messages per sms/sendarray call (Kavenegar's limit)
POOL_SIZE = 32  # kept-open connections per process: one per worker thread, at most

# What the codes that stop a campaign mean, for the reason shown in `campaign status`.
ACCOUNT_PROBLEMS = {
    401: "the Kavenegar account is disabled",
    403: "the Kavenegar API key is not valid",
    418: "the Kavenegar account has no credit left",
}
# Methods whose list parameters are JSON arrays; every other method takes lists
# comma-separated.
JSON_ARRAY_METHODS = frozenset({"sms/sendarray"})
_LOGGERS_TO_SCRUB = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "urllib3.response",
    "urllib3.poolmanager",
    "requests",
)


# -- errors -------------------------------------------------------------------------------


class KavenegarError(DeliveryError):
    """Raised when a Kavenegar call fails; `code` is Kavenegar's `return.status`."""

    def __init__(self, code: int | None, message: str, *, method: str = "") -> None:
        self.message = message
        self.method = method
        where = f"Kavenegar {method}" if method else "Kavenegar"
        text = f"{where}: {code} {message}" if code is not None else f"{where}: {message}"
        super().__init__(text.strip(), code=code)

    def __reduce__(self) -> tuple[Any, ...]:
        # `copy.copy` (one instance per thread that raises it) and pickle rebuild an
        # exception from `args`, which here is the text alone: restore it as it is.
        return (_rebuilt, (type(self), self.args, self.__dict__))

    @staticmethod
    def from_code(code: int, message: str, *, method: str = "") -> KavenegarError:
        """The error of the right kind for Kavenegar's code."""
        kind: type[KavenegarError]
        if code in SLOW_DOWN_CODES:
            kind = KavenegarThrottledError
        elif code in TRANSIENT_CODES or code >= 500:
            kind = KavenegarTransientError
        elif code in ACCOUNT_CODES:
            kind = KavenegarAccountError
        elif code == INVALID_RECEPTOR:
            kind = KavenegarReceptorError
        else:
            kind = KavenegarRejectedError
        return kind(code, message, method=method)


def _rebuilt(kind: type[KavenegarError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = kind.__new__(kind)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class KavenegarTransientError(KavenegarError, TransientDeliveryError):
    """Raised when a call may succeed later (409 server busy, 451 too many calls)."""


class KavenegarThrottledError(KavenegarTransientError, ThrottledError):
    """Raised when Kavenegar says "too many calls" (451)."""


class KavenegarNetworkError(KavenegarTransientError):
    """Raised when a call did not complete (timeout, dropped connection): Kavenegar may
    or may not have acted on it."""


class KavenegarAccountError(KavenegarError, AccountError):
    """Raised when the account cannot send at all (401 disabled, 403 bad key, 418 no
    credit): nothing will go until a person acts."""

    @property
    def problem(self) -> str:
        return ACCOUNT_PROBLEMS.get(self.code or 0, "the Kavenegar account cannot send")

    @problem.setter
    def problem(self, value: str) -> None:  # AccountError's default; the code decides
        pass


class KavenegarReceptorError(KavenegarError, InvalidRecipientError):
    """Raised when Kavenegar rejects the receptor (411): the number is not valid."""


class KavenegarRejectedError(KavenegarError, PermanentDeliveryError):
    """Raised when Kavenegar rejects the message for a reason of its own (other 4xx)."""


# -- the client ---------------------------------------------------------------------------


class _ScrubSecrets(logging.Filter):
    """Replaces known secrets in log records before any handler sees them."""

    def __init__(self) -> None:
        super().__init__("scrub-secrets")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        scrubbed = scrub(message, self.secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_scrubber = _ScrubSecrets()


def _protect(secret: str) -> None:
    """Scrub `secret` from the HTTP libraries' log records from now on."""
    _scrubber.secrets.add(secret)
    for name in _LOGGERS_TO_SCRUB:
        logger = logging.getLogger(name)
        if _scrubber not in logger.filters:
            logger.addFilter(_scrubber)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _encode(method: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Form fields: lists as JSON arrays for array methods, comma-joined otherwise."""
    data: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if method in JSON_ARRAY_METHODS:
                data[name] = json.dumps([str(v) for v in value], ensure_ascii=False)
            else:
                data[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            data[name] = "1" if value else "0"
        else:
            data[name] = str(value)
    return data


class KavenegarClient(KavenegarAPI):
    """`KavenegarAPI` with timeouts, a reused session, typed errors and a hidden key.

    Each `sms_*`/`account_*` method of the base class returns the answer's `entries`
    or raises a `KavenegarError`.
    """

    def __init__(
        self,
        api_key: str | SecretStr,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        pool_size: int = 8,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(REDACTED)  # the base class keeps `apikey` in plain sight
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not key.get_secret_value():
            raise ValueError("a Kavenegar API key is required")
        self._key = key
        _protect(key.get_secret_value())
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    def __repr__(self) -> str:
        return f"KavenegarClient(base_url={self.base_url!r}, timeout={self.timeout!r})"

    __str__ = __repr__

    def _url(self, name: str) -> str:
        return f"{self.base_url}/{self.version}/{self._key.get_secret_value()}/{name}.json"

    def _request(self, action: str, method: str, params: Mapping[str, Any] | None = None) -> Any:
        name = f"{action}/{method}"
        data = _encode(name, params or {})
        error: KavenegarError | None = None
        try:
            response = self.session.post(
                self._url(name), data=data, headers=self.headers, timeout=self.timeout
            )
        except requests.Timeout as exc:
            error = KavenegarNetworkError(
                None, f"no answer within {self.timeout:g}s ({type(exc).__name__})", method=name
            )
        except requests.RequestException as exc:
            text = scrub(str(exc), [self._key.get_secret_value()])
            error = KavenegarNetworkError(None, f"{type(exc).__name__}: {text}", method=name)
        if error is not None:
            # Raised here, outside `except`, so that no chained cause quotes the URL.
            raise error
        return self._entries(name, response)

    def _entries(self, name: str, response: requests.Response) -> Any:
        secret = [self._key.get_secret_value()]
        try:
            body = response.json()
            status = int(body["return"]["status"])
            message = scrub(str(body["return"].get("message") or ""), secret)
        except (ValueError, KeyError, TypeError):
            body = None
        if body is None:
            # Not Kavenegar's envelope: a proxy's error page or a cut-off answer.
            code = response.status_code
            reason = f"HTTP {code} without Kavenegar's JSON envelope"
            if 200 <= code < 300 or code >= 500:
                raise KavenegarTransientError(code, reason, method=name)
            raise KavenegarError.from_code(code, reason, method=name)
        if status != 200:
            raise KavenegarError.from_code(status, message, method=name)
        return body.get("entries")

    def close(self) -> None:
        self.session.close()


# -- the transport ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A message received on the sender line (`sms/receive`)."""

    messageid: int
    sender: str
    message: str
    date: int


def receptor_for(mobile: str) -> str:
    """Kavenegar's form of an E.164 number: national for Iran (`09121234567`)."""
    if mobile.startswith("+98"):
        return "0" + mobile[3:]
    if mobile.startswith("+"):
        return "00" + mobile[1:]
    return mobile


class KavenegarTransport:
    """Sends SMS with `localid` = the delivery id: one per call through `sms/send`, or
    several through `sms/sendarray` (`send_array`, which `batch.KavenegarBatcher` uses)."""

    paces_calls = False  # the caller takes a rate slot per message

    def __init__(self, client: KavenegarClient, *, sender: str) -> None:
        self.client = client
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> KavenegarTransport:
        if settings.kavenegar_api_key is None or not settings.kavenegar_sender:
            raise ValueError("KAVENEGAR_API_KEY and KAVENEGAR_SENDER are required")
        client = KavenegarClient(
            settings.kavenegar_api_key,
            base_url=settings.kavenegar_base_url,
            timeout=settings.kavenegar_timeout,
            pool_size=max(settings.worker_threads, POOL_SIZE),
        )
        return cls(client, sender=settings.kavenegar_sender)

    def __repr__(self) -> str:
        return f"KavenegarTransport({self.client!r}, sender={self.sender!r})"

    def send(self, *, receptor: str, message: str, localid: int, campaign: str) -> SmsResult:
        entries = self.client.sms_send(
            {
                "receptor": receptor_for(receptor),
                "sender": self.sender,
                "message": message,
                "localid": str(localid),
            }
        )
        result = _result(_first(entries, "sms/send"))
        if result is None:
            raise KavenegarTransientError(
                None, "sms/send answered without a messageid", method="sms/send"
            )
        return result

    def send_array(self, messages: Sequence[tuple[str, str, int]]) -> list[SmsResult | None]:
        """Several (receptor, message, localid) in one `sms/sendarray` call (at most
        `MAX_RECEPTORS`), `localmessageids` = the localids; each message's result, by
        position (None: the answer has no entry, or no messageid, for it). An error
        answer is raised for the whole call."""
        if not 0 < len(messages) <= MAX_RECEPTORS:
            raise ValueError(f"sms/sendarray takes 1 to {MAX_RECEPTORS} messages")
        entries = self.client.sms_sendarray(
            {
                "receptor": [receptor_for(receptor) for receptor, _, _ in messages],
                "sender": [self.sender] * len(messages),
                "message": [message for _, message, _ in messages],
                "localmessageids": [localid for _, _, localid in messages],
            }
        )
        if not isinstance(entries, list):
            raise KavenegarTransientError(None, "answer without entries", method="sms/sendarray")
        results: list[SmsResult | None] = [
            _result(entry) if isinstance(entry, dict) else None for entry in entries
        ]
        results += [None] * (len(messages) - len(results))
        return results[: len(messages)]

    def status_by_localid(self, localid: int) -> SmsResult | None:
        entries = self.client.sms_statuslocalmessageid({"localid": str(localid)})
        entry = _first(entries, "sms/statuslocalmessageid")
        try:
            messageid = int(entry.get("messageid") or 0)
            status = int(entry.get("status") or UNKNOWN_MESSAGE)
        except (TypeError, ValueError):
            return None
        if messageid <= 0 or status == UNKNOWN_MESSAGE:
            return None
        return SmsResult(messageid=messageid, cost=None, status=status)

    def statuses(self, messageids: Sequence[int]) -> dict[int, int]:
        """The current status of each message Kavenegar knows (batches of 500)."""
        found: dict[int, int] = {}
        for start in range(0, len(messageids), STATUS_BATCH):
            batch = list(messageids[start : start + STATUS_BATCH])
            for entry in self.client.sms_status({"messageid": batch}) or []:
                try:
                    messageid, status = int(entry["messageid"]), int(entry["status"])
                except (KeyError, TypeError, ValueError):
                    continue
                if status != UNKNOWN_MESSAGE:
                    found[messageid] = status
        return found

    def receive(self) -> list[InboundSms]:
        """Unread messages on the sender line (Kavenegar marks them read); at most 100."""
        entries = self.client.sms_receive({"linenumber": self.sender, "isread": 0}) or []
        inbound = []
        for entry in entries:
            try:
                inbound.append(
                    InboundSms(
                        messageid=int(entry["messageid"]),
                        sender=str(entry["sender"]),
                        message=str(entry.get("message") or ""),
                        date=int(entry.get("date") or 0),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
        return inbound

    def close(self) -> None:
        self.client.close()


def _result(entry: dict[str, Any]) -> SmsResult | None:
    """A sent message's result from its entry; None without a messageid."""
    try:
        return SmsResult(
            messageid=int(entry["messageid"]),
            cost=int(entry["cost"]) if entry.get("cost") is not None else None,
            status=int(entry["status"]) if entry.get("status") is not None else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _first(entries: Any, method: str) -> dict[str, Any]:
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        return entries[0]
    raise KavenegarTransientError(None, "answer without entries", method=method)
