"""Error storms: more than `MAX_SEND_ERRORS` sends of a campaign failing in a row, per
channel and across every worker process (an INCR per failure in Redis, a DEL per
success at most once a second per process; in memory without Redis). The caller
pauses the campaign. README: "Error storms".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

DAY_S = 86_400


class ErrorStorm:
    """Counts consecutive send failures per campaign; `failed` says when to pause."""

    def __init__(
        self,
        *,
        limit: int,
        client: redis.Redis | None = None,
        prefix: str = "dispatcher:storm:email",
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.client = client
        self.prefix = prefix
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._local: dict[int, int] = {}  # inline mode: the counts themselves
        self._dirty: dict[int, float] = {}  # Redis mode: campaign -> next forced reset

    def __repr__(self) -> str:
        where = "redis" if self.client is not None else "memory"
        return f"ErrorStorm(limit={self.limit}, {where})"

    def key(self, campaign_id: int) -> str:
        return f"{self.prefix}:{campaign_id}"

    def failed(self, campaign_id: int) -> int | None:
        """Count one failure; the count when it is over the limit (pause now), else None."""
        if self.limit <= 0:
            return None
        if self.client is None:
            with self._lock:
                count = self._local[campaign_id] = self._local.get(campaign_id, 0) + 1
        else:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(self.key(campaign_id))
            pipe.expire(self.key(campaign_id), DAY_S)
            count = int(pipe.execute()[0])
            with self._lock:
                self._dirty[campaign_id] = 0.0  # reset on this process's next success
        return count if count > self.limit else None

    def succeeded(self, campaign_id: int) -> None:
        """A send went through: the run of failures is over."""
        if self.limit <= 0:
            return
        if self.client is None:
            with self._lock:
                self._local.pop(campaign_id, None)
            return
        now = self._clock()
        with self._lock:
            due = self._dirty.get(campaign_id, 0.0)
            if now < due:
                return
            self._dirty[campaign_id] = now + self.refresh_s
        self.client.delete(self.key(campaign_id))

    def reset(self, campaign_id: int) -> None:
        """Start counting afresh (after the campaign was paused for the storm)."""
        with self._lock:
            self._local.pop(campaign_id, None)
            self._dirty.pop(campaign_id, None)
        if self.client is not None:
            self.client.delete(self.key(campaign_id))
