"""A worker thread's step run on the process's event loop, settled only once it has
really ended: after a timeout or an interruption the step is cancelled and waited for,
so its bookkeeping reads final state and a send cannot finish after being handed back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from dispatcher.errors import TransientDeliveryError

log = logging.getLogger("dispatcher.workers")

CANCEL_WAIT_S = 10.0  # for a step that timed out to stop, before it is given up on

_R = TypeVar("_R")
_S = TypeVar("_S")


def run_on_loop(
    loop: asyncio.AbstractEventLoop,
    step: Coroutine[Any, Any, _R],
    settle: Callable[[_R | None, BaseException | None], _S],
    *,
    wait_s: float,
) -> _S:
    """Run `step` on `loop`, wait until it has ended, then `settle(result, error)`
    on this thread (error: what the step raised, or CancelledError after a timeout).
    Something raised into this thread (a time limit, a shutdown) is raised again
    after the settling."""
    ended: Future[None] = Future()
    box: list[Any] = [None, None]
    running = asyncio.run_coroutine_threadsafe(_until_ended(step, box, ended), loop)
    interrupted: BaseException | None = None
    try:
        ended.result(wait_s)  # set once the step has ended, whatever ended it
    except TimeoutError:
        if not _cancel(running, ended):
            raise TransientDeliveryError(f"no outcome after {wait_s:.0f} s") from None
    except BaseException as exc:  # raised into this thread
        interrupted = exc
        if not _cancel(running, ended):
            raise
    outcome = settle(box[0], box[1])
    if interrupted is not None:
        raise interrupted
    return outcome


async def _until_ended(step: Coroutine[Any, Any, Any], box: list[Any], ended: Future[None]) -> None:
    try:
        box[0] = await step
    except BaseException as exc:  # cancelled too: the worker thread settles it
        box[1] = exc
    finally:
        ended.set_result(None)


def _cancel(running: Future[None], ended: Future[None]) -> bool:
    """Cancel the step and wait for it to end; False if it would not end."""
    running.cancel()
    try:
        ended.result(CANCEL_WAIT_S)
    except TimeoutError:  # stuck: left as it is (a delivery `sending`, for the lease)
        log.error("a step on the event loop would not stop")
        return False
    return True
