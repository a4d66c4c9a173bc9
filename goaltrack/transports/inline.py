"""Transports with no worker: ``sync`` delivers in the calling thread, ``disabled`` sends nothing.

``sync`` is for scripts, management commands and serverless functions, where there is no process
left to deliver after the call returns. It blocks the caller for the request and its retries
(bounded by ``sync_deadline``), so never use it on an event loop. Its retries follow the same
rules as every transport's (:func:`goaltrack.retry.judge`), with the process's shared
breaker for the destination: while the API is down, concurrent calls send one probe at a time
and the others wait for it within their deadline. A refused key (401/403) holds nothing here: it
is the call's final failure, and later calls fail at once, without a request, until a probe (one
per interval) is accepted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from goaltrack.delivery import DeliveryResult, Endpoint, Outcome, deliver
from goaltrack.http_client import HttpPoster
from goaltrack.items import Tracked
from goaltrack.retry import SYSTEM_CLOCK, Clock, RetryPolicy, RetryState, judge, shared_breaker
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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._endpoint = endpoint
        self._settlement = settlement
        # The call's deadline is its time budget for transient failures (give_up_after), and
        # nothing is held for a refused key: the refusal is the call's final failure (later
        # calls fail without a request until a probe is accepted).
        self._retry = dataclasses.replace(
            retry, give_up_after=min(retry.give_up_after, sync_deadline), refusal_give_up=0.0
        )
        self._deadline = sync_deadline
        self._new_http = http
        self._clock = clock
        self._http: HttpPoster | None = None
        self._lock = threading.Lock()

    def submit(self, goal: Tracked) -> bool:
        self._settlement.count("queued", kind=goal.kind)
        clock = self._clock
        started = clock.monotonic()
        deadline = started + self._deadline
        shared = shared_breaker(self._endpoint, self._retry)
        http = self._client()
        state = RetryState()
        last: DeliveryResult | None = None
        attempts = 0
        while True:
            with shared.lock:
                ticket = shared.breaker.admit(clock.monotonic())
            result = None
            if ticket is not None:
                result = deliver(goal, self._endpoint, http)
                last = result
                attempts += 1
            with shared.lock:
                now = clock.monotonic()
                verdict = judge(
                    shared.breaker, self._retry, state, ticket, result, now=now, age=now - started
                )
            state = verdict.state
            if verdict.retry_in is None:
                if verdict.final is not None:
                    self._settlement.failed(goal, verdict.final)
                    return False
                assert result is not None
                self._settlement.delivered(goal, result, maybe_duplicate=state.may_have_arrived)
                return True
            if now + verdict.retry_in >= deadline:
                self._settlement.failed(goal, self._out_of_time(attempts, last))
                return False
            if result is not None:
                self._settlement.retrying(goal, result, verdict.retry_in)
            clock.sleep(verdict.retry_in)  # between attempts: this mode blocks by design

    def _out_of_time(self, attempts: int, last: DeliveryResult | None) -> DeliveryResult:
        """The final failure of a goal whose next attempt would come after ``sync_deadline``."""
        if last is None:
            return DeliveryResult(
                Outcome.FAILED,
                f"not sent within sync_deadline ({self._deadline:g} s): the API is down and "
                "another call probes it",
            )
        return DeliveryResult(
            Outcome.FAILED,
            f"gave up after {attempts} attempts, not delivered within sync_deadline "
            f"({self._deadline:g} s); last: {last.reason}",
            status=last.status,
        )

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

    def submit(self, goal: Tracked) -> bool:
        logger.debug("goaltrack is disabled; not sending %r", goal)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float | None = None) -> bool:
        return True

    @property
    def stats(self) -> Stats:
        return self._settlement.snapshot()
