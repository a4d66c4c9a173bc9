"""Transports with no worker: ``sync`` delivers in the calling thread, ``disabled`` sends nothing.

``sync`` is for scripts, management commands and serverless functions, where there is no process
left to deliver after the call returns. It blocks the caller for the request and its retries
(bounded by ``sync_deadline``), so never use it on an event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from goaltrack.delivery import Endpoint, Outcome, RetryPolicy, deliver
from goaltrack.goals import Goal
from goaltrack.http_client import HttpPoster
from goaltrack.transports.base import Settlement, Stats

__all__ = ["DisabledTransport", "SyncTransport"]

logger = logging.getLogger("goaltrack")


class SyncTransport:
    """Deliver each goal before ``submit`` returns, retrying within ``sync_deadline`` seconds.

    ``submit`` returns True when the goal was delivered, False when it finally failed.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        retry: RetryPolicy,
        sync_deadline: float = 10.0,
        http: Callable[[], HttpPoster],
    ) -> None:
        self._endpoint = endpoint
        self._settlement = settlement
        self._retry = retry
        self._deadline = sync_deadline
        self._new_http = http
        self._http: HttpPoster | None = None
        self._lock = threading.Lock()

    def submit(self, goal: Goal) -> bool:
        self._settlement.count("queued")
        deadline = time.monotonic() + self._deadline
        http = self._client()
        attempts = 0
        may_have_arrived = False
        while True:
            result = deliver(goal, self._endpoint, http)
            attempts += 1
            if result.outcome is Outcome.DELIVERED:
                self._settlement.delivered(goal, result, maybe_duplicate=may_have_arrived)
                return True
            if result.outcome is Outcome.RETRY:
                delay = self._retry.delay_before_retry(attempts, result)
                if delay is not None and time.monotonic() + delay < deadline:
                    self._settlement.retrying(goal, result, delay)
                    may_have_arrived = may_have_arrived or result.may_have_arrived
                    time.sleep(delay)  # backoff between attempts: this mode blocks by design
                    continue
                result = self._retry.gave_up(attempts, result)
            self._settlement.failed(goal, result)
            return False

    def _client(self) -> HttpPoster:
        with self._lock:
            if self._http is None:
                self._http = self._new_http()
            return self._http

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()
        return True

    @property
    def stats(self) -> Stats:
        return self._settlement.snapshot()


class DisabledTransport:
    """Send nothing: goals are validated as usual, logged at debug level, and forgotten.

    ``submit`` returns False: nothing will be sent.
    """

    def __init__(self, settlement: Settlement) -> None:
        self._settlement = settlement

    def submit(self, goal: Goal) -> bool:
        logger.debug("goaltrack is disabled; not sending %r", goal)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True

    @property
    def stats(self) -> Stats:
        return self._settlement.snapshot()
