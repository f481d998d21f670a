"""Group send: the Kavenegar sends of a process's worker threads, one call per batch.

Each worker thread calls `send` as it would `KavenegarTransport.send`, and blocks. One
sender thread per process takes what is waiting (no linger: while a call is in flight
the next batch gathers, as the group commit of `delivery/groupcommit.py` does for
database writes), at most `KAVENEGAR_BATCH` messages; it takes one slot of the shared
rate for the call (`pace`: KAVENEGAR_RATE_LIMIT counts calls) and makes one call:
`sms/send` for a lone message (as without a batch), `sms/sendarray` with
`localmessageids` = the localids (the delivery ids) for several. Each thread gets its
own message's result, by position in the answer.

- A failure of the whole call (transient, 451, no answer, account refused) is raised
  in every thread of the call, each its own copy; the copies after the first of each
  campaign are `repeated`, so the error storm counts the call once.
- A refusal of a message of a `sendarray` call (411, 413, 422...) does not say which
  message: each thread then sends its own message alone through `sms/send` (a rate
  slot each), so each refusal lands on its own delivery. The localid drops anything
  the refused call may have accepted after all.
- A message the answer has no entry for gets a transient error: its retry looks it up
  by localid, as after a lost answer.

`status_by_localid` is a call of its own, paced by its caller.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from dispatcher.errors import DeliveryError, PermanentDeliveryError
from dispatcher.sms.kavenegar import MAX_RECEPTORS, KavenegarTransientError, KavenegarTransport
from dispatcher.sms.transport import SmsResult

log = logging.getLogger("dispatcher.sms.batch")

DEFAULT_BATCH = 100  # messages per call at most (KAVENEGAR_BATCH)
WAIT_S = 300.0  # a thread gives up on its batch after this (its retry looks it up)


@dataclass(slots=True, eq=False)
class _Waiting:
    """One thread's message, and what it is to do: its result, an error, or None (send
    it alone)."""

    receptor: str
    message: str
    localid: int
    campaign: str
    future: Future[SmsResult | None] = field(default_factory=Future)


class KavenegarBatcher:
    """`KavenegarTransport`'s sends of many threads, gathered by one sender thread."""

    paces_calls = True  # one rate slot per call, taken here: none per message

    def __init__(
        self,
        transport: KavenegarTransport,
        *,
        pace: Callable[[], None],
        max_batch: int = DEFAULT_BATCH,
    ) -> None:
        if not 1 <= max_batch <= MAX_RECEPTORS:
            raise ValueError(f"a batch carries 1 to {MAX_RECEPTORS} messages")
        self.transport = transport
        self.pace = pace
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.calls = 0  # provider calls made by the sender thread
        self.messages = 0  # messages they carried

    def __repr__(self) -> str:
        return f"KavenegarBatcher({self.transport!r}, max_batch={self.max_batch})"

    def send(self, *, receptor: str, message: str, localid: int, campaign: str) -> SmsResult:
        waiting = _Waiting(receptor, message, localid, campaign)
        with self._cond:
            if self._closed:
                raise KavenegarTransientError(None, "the SMS sender is closed", method="sms/send")
            self._queue.append(waiting)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="dispatcher-sms", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            result = waiting.future.result(WAIT_S)
        except TimeoutError:
            raise KavenegarTransientError(
                None, f"no answer for the batch within {WAIT_S:g}s", method="sms/sendarray"
            ) from None
        if result is not None:
            return result
        # Refused in a batch, for this message or another: alone, the answer is its own.
        self.pace()
        return self.transport.send(
            receptor=receptor, message=message, localid=localid, campaign=campaign
        )

    def waiting(self) -> int:
        """Messages waiting for the sender thread to take them."""
        with self._cond:
            return len(self._queue)

    def status_by_localid(self, localid: int) -> SmsResult | None:
        return self.transport.status_by_localid(localid)

    def close(self) -> None:
        """Send what is waiting, stop the sender thread, close the client."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(30)
        self.transport.close()

    # -- the sender thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:  # closed, and everything asked is sent
                    return
            try:
                self.pace()  # what arrives meanwhile goes in this call too
            except DeliveryError as exc:  # the shared limiter's Redis is down
                self._fail(self._take(), exc)
                continue
            except Exception as exc:  # a bug: every caller of the batch hears of it
                self._fail(self._take(), _unexpected(exc, "waiting for a rate slot"))
                continue
            self._call(self._take())

    def _take(self) -> list[_Waiting]:
        with self._cond:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        return batch

    def _call(self, batch: list[_Waiting]) -> None:
        self.calls += 1
        self.messages += len(batch)
        results: list[SmsResult | None]
        try:
            if len(batch) == 1:
                [one] = batch
                results = [
                    self.transport.send(
                        receptor=one.receptor,
                        message=one.message,
                        localid=one.localid,
                        campaign=one.campaign,
                    )
                ]
            else:
                results = self.transport.send_array(
                    [(w.receptor, w.message, w.localid) for w in batch]
                )
        except PermanentDeliveryError as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
            else:  # which message? each sends its own alone
                log.info("sms/sendarray of %d refused (%s): each sent alone", len(batch), exc)
                for waiting in batch:
                    waiting.future.set_result(None)
            return
        except DeliveryError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:
            self._fail(batch, _unexpected(exc, "sending"))
            return
        for waiting, result in zip(batch, results, strict=True):
            if result is None:  # its retry asks for it by localid
                text = "answered without an entry for this message"
                error = KavenegarTransientError(None, text, method="sms/sendarray")
                waiting.future.set_exception(error)
            else:
                waiting.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Waiting], exc: DeliveryError) -> None:
        """Raise `exc` in every thread of the batch, each its own copy."""
        campaigns: set[str] = set()
        for waiting in batch:
            try:
                error = copy.copy(exc)
            except Exception:  # an error that cannot be copied: its text, transient
                error = KavenegarTransientError(None, str(exc), method="sms/sendarray")
            error.repeated = waiting.campaign in campaigns
            campaigns.add(waiting.campaign)
            waiting.future.set_exception(error)


def _unexpected(exc: Exception, doing: str) -> DeliveryError:
    """A transient error in place of one the sender thread did not expect (its text is
    left out: it may quote what a log must not show)."""
    log.error("the SMS sender failed %s (%s)", doing, type(exc).__name__)
    return KavenegarTransientError(None, f"the batch failed {doing} ({type(exc).__name__})")
