"""The outbox transport: goals committed to a SQLite file before ``track`` returns, then delivered.

``submit`` commits the goal to the outbox (stdlib ``sqlite3``, WAL) before it returns, so a goal
whose ``track()`` returned survives a crash, ``kill -9``, a deploy or an outage of any length.
Worker threads deliver from the file through :func:`goaltrack.delivery.deliver`, with the same
:class:`~goaltrack.delivery.RetryPolicy` and :class:`~goaltrack.delivery.CircuitBreaker` as the
in-memory transport:

- a worker *claims* one goal at a time by setting a lease (owner + expiry) in one write
  transaction, so several processes sharing one file (gunicorn workers) deliver each goal once;
  a lease held by a process that died expires and the goal is claimed again (and counted as a
  possible duplicate: the dead process may have sent it);
- while the API is down, the workers probe it one request at a time and goals wait in the file
  without spending retries; the first answer makes every goal the outage held back due at once;
- delivered goals are deleted; transient failures wait in the file (``due_at``) for their retry;
  final failures (refused by the API, out of retries, older than ``max_age`` — the outbox's time
  budget for transient failures) move to the ``dead_letters`` table, which
  ``goaltrack outbox dead-letters|retry|purge`` work on;
- goals stored for another ``api_url`` are delivered to this tracker's; goals of another provider
  cannot be, and move to the dead letters with a warning;
- limits: at most ``max_goals`` goals wait (past that new goals are dropped, counted, and logged);
- a restarted process delivers what a killed one left; a forked child opens its own connections.

``close`` does not drop anything: what is not delivered stays in the file for the next start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable

from goaltrack.delivery import (
    CircuitBreaker,
    DeliveryResult,
    Endpoint,
    Outcome,
    Retries,
    RetryPolicy,
    Ticket,
    deliver,
    judge,
)
from goaltrack.goals import Goal
from goaltrack.http_client import HttpPoster
from goaltrack.transports.base import (
    Settlement,
    Stats,
    exiting,
    forget_at_exit,
    register_for_process_events,
    report_exit,
    start_thread,
)
from goaltrack.transports.outbox.store import (
    Expired,
    OutboxStore,
    StoredGoal,
    connect,
    decode_goal,
    encode_goal,
)

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_GOALS", "OutboxTransport"]

logger = logging.getLogger("goaltrack")

DEFAULT_MAX_GOALS = 100_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
#: How often an idle worker looks for goals other processes left (expired leases, restarts).
POLL_INTERVAL = 0.5
#: How often the age limit and the provider check run over the file.
AGE_CHECK_INTERVAL = 60.0
_WARNING_INTERVAL = 10.0


class _Claim(Retries):
    __slots__ = ("created_at", "goal", "id", "ticket")

    def __init__(self, stored: StoredGoal, goal: Goal, ticket: Ticket) -> None:
        super().__init__(
            stored.attempts, stored.strikes, stored.strike_mark, stored.may_have_arrived
        )
        self.id = stored.id
        self.goal = goal
        self.created_at = stored.created_at
        self.ticket = ticket


class OutboxTransport:
    """Deliver goals from a SQLite outbox file; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        retry: RetryPolicy,
        max_in_flight: int = 4,
        timeout: float = 5.0,
        shutdown_timeout: float = 3.0,
        flush_at_exit: bool = True,
        http: Callable[[], HttpPoster],
        max_goals: int = DEFAULT_MAX_GOALS,
        max_age: float = DEFAULT_MAX_AGE,
        lease: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._endpoint = endpoint
        self._target = endpoint.url
        self._provider = endpoint.provider.name
        self._settlement = settlement
        # The outbox keeps goals across restarts: its max_age is the time budget for transient
        # failures, in place of the in-memory give_up_after.
        self._retry = dataclasses.replace(retry, give_up_after=max_age)
        self._max_in_flight = max_in_flight
        self._new_http = http
        self._max_goals = max_goals
        self._max_age = max_age
        # Longer than one attempt can take (it is bounded by ``timeout`` in all).
        self._lease = lease if lease is not None else 3 * timeout + 5.0
        self.shutdown_timeout = shutdown_timeout
        self._reset_state()
        self._store = OutboxStore(self.path)  # fails now, at configuration, if unusable
        register_for_process_events(self, close_at_exit=flush_at_exit)
        if self._has_goals():
            self._release_dead_owners_leases()
            self._expire_goals()  # another provider's goals are reported now, not in a minute
            self._start_workers()  # what a previous run left

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._queued = 0
        self._depth = 0
        self._added_since_check = 0
        self._last_id = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._breaker = CircuitBreaker(self._retry.probe_interval_max)
        self._http: HttpPoster | None = None
        self._last_full_warning = 0.0
        self._next_age_check = 0.0
        self._unreported_full = 0

    # -- the request path -------------------------------------------------------------------

    def submit(self, goal: Goal) -> bool:
        if self._closed:
            self._settlement.dropped(goal, "the tracker is closed")
            return False
        if self._depth + self._added_since_check >= self._max_goals:
            self._refresh_depth()
            if self._depth + self._added_since_check >= self._max_goals:
                self._full(goal)
                return False
        text = encode_goal(goal)
        now = time.time()
        try:
            with self._lock:
                self._last_id = self._store.add(self._target, text, now) or self._last_id
                self._queued += 1
                self._added_since_check += 1
        except sqlite3.Error as exc:
            self._settlement.dropped(goal, f"the outbox could not store it: {exc}")
            return False
        if not self._threads:
            self._start_workers()
        elif self._breaker.would_admit(time.monotonic()):  # else let workers sleep
            with self._cond:
                self._cond.notify()
        return True

    def _full(self, goal: Goal) -> None:
        now = time.monotonic()
        self._unreported_full += 1
        if now - self._last_full_warning >= _WARNING_INTERVAL:
            logger.warning(
                "goaltrack outbox %s is full (%d goals waiting, max_goals=%d): dropped %d "
                "goal(s); is the API reachable? see `goaltrack outbox status`",
                self.path,
                self._depth,
                self._max_goals,
                self._unreported_full,
            )
            self._last_full_warning, self._unreported_full = now, 0
        self._settlement.dropped(goal, f"the outbox is full ({self._max_goals} goals waiting)")

    def _refresh_depth(self) -> int:
        with self._lock:
            self._depth, self._added_since_check = self._store.depth(), 0
        return self._depth

    def _release_dead_owners_leases(self) -> None:
        """Leases held by processes of this host that no longer exist end now, not at expiry.

        (A pid reused by an unrelated process only means waiting for the lease to expire.)
        """
        host = socket.gethostname()
        with self._lock:
            owners = self._store.leases(time.time())
        dead = [owner for owner in owners if _is_dead_local_owner(owner, host)]
        if dead:
            with self._lock:
                self._store.release(dead)
            logger.info("goaltrack: re-delivering goals left by %d ended process(es)", len(dead))

    def _has_goals(self, up_to: int | None = None) -> bool:
        with self._lock:
            return self._store.has_goals(up_to)

    @property
    def stats(self) -> Stats:
        try:
            pending = self._refresh_depth()
        except sqlite3.Error:
            pending = self._depth
        return self._settlement.snapshot(pending=pending, queued=self._queued)

    # -- flush and close ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the goals this process stored so far left the outbox (by any process)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id = self._last_id
        while True:
            if not last_id or not self._has_goals(last_id):
                return True
            if not any(t.is_alive() for t in self._threads):
                self._work(deadline=deadline, up_to=last_id)  # exit time: no thread can start
                if not self._has_goals(last_id):
                    return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(POLL_INTERVAL if remaining is None else min(remaining, 0.05))

    def close(self, timeout: float | None = None) -> bool:
        """Flush within *timeout*, then stop; undelivered goals stay in the outbox file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        for thread in list(self._threads):
            if thread is not threading.current_thread() and thread.ident is not None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        http, self._http = self._http, None
        if http is not None:
            http.close()
        forget_at_exit(self)
        if not flushed:
            report_exit(
                self.stats, pending=self._refresh_depth(), lost=0, timeout=timeout, outbox=self.path
            )
        return flushed

    # -- workers ------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        with self._cond:
            if self._threads or self._closed or sys.is_finalizing() or exiting():
                return
            threads = [
                threading.Thread(target=self._work, name=f"goaltrack-outbox-{index}", daemon=True)
                for index in range(self._max_in_flight)
            ]
            self._threads = threads  # claimed: a concurrent submit starts no others
        for thread in threads:  # outside the lock: see start_thread
            if not start_thread(thread):  # interpreter shutting down
                break

    def _client(self) -> HttpPoster:
        http = self._http
        if http is None:
            with self._cond:
                if self._http is None:
                    self._http = self._new_http()
                http = self._http
        return http

    def _work(self, *, deadline: float | None = None, up_to: int | None = None) -> None:
        """A worker's loop; with *deadline*, the inline delivery of a flush at exit."""
        while not (self._closed and deadline is None):
            if deadline is not None and time.monotonic() >= deadline:
                return
            if time.time() >= self._next_age_check:
                self._expire_goals()
            try:
                claim, wait = self._claim(up_to)
            except sqlite3.Error:
                logger.exception("goaltrack: reading the outbox %s failed", self.path)
                claim, wait = None, 1.0
            if claim is not None:
                self._attempt(claim, deadline)
                continue
            if deadline is not None:
                if up_to is not None and not self._has_goals(up_to):
                    return
                wait = min(wait, deadline - time.monotonic())
                if wait > 0:
                    time.sleep(wait)  # inline at exit: no other thread to wake us
                continue
            with self._cond:
                if not self._closed:
                    self._cond.wait(max(0.001, min(wait, POLL_INTERVAL)))

    def _claim(self, up_to: int | None) -> tuple[_Claim | None, float]:
        """Lease the next due goal, once the breaker admits a request; else (None, wait)."""
        with self._lock:
            now = time.monotonic()
            ticket = self._breaker.admit(now)
            if ticket is None:
                return None, (self._breaker.wake_at or now) - now
            try:
                stored, next_due = self._store.claim(self._owner, self._lease, time.time(), up_to)
            except BaseException:
                self._breaker.release(ticket)
                raise
            if stored is None:
                self._breaker.release(ticket)  # nothing to send on it
        if stored is None:
            wait = POLL_INTERVAL if next_due is None else next_due - time.time()
            return None, min(POLL_INTERVAL, wait)
        try:
            goal = decode_goal(stored.text)
        except (ValueError, TypeError, KeyError) as exc:
            with self._lock:
                self._breaker.release(ticket)
                self._store.dead_letter(
                    stored.id, stored.attempts, None, f"unreadable stored goal: {exc}", time.time()
                )
            return None, 0.0
        return _Claim(stored, goal, ticket), 0.0

    def _attempt(self, claim: _Claim, deadline: float | None) -> None:
        try:
            result = deliver(claim.goal, self._endpoint, self._client(), deadline=deadline)
        except Exception as exc:  # a bug of ours must not kill the worker or lose the goal
            logger.exception("goaltrack: unexpected error delivering %r", claim.goal.name)
            result = DeliveryResult(Outcome.RETRY, f"unexpected error: {type(exc).__name__}")
        try:
            self._settle(claim, result)
        except sqlite3.Error:
            # The goal stays leased; when the lease expires it is delivered again.
            logger.exception("goaltrack: recording a delivery in the outbox %s failed", self.path)
        with self._cond:
            self._cond.notify_all()

    def _settle(self, claim: _Claim, result: DeliveryResult) -> None:
        with self._lock:
            now = time.time()
            verdict = judge(
                self._breaker,
                self._retry,
                claim,
                claim.ticket,
                result,
                now=time.monotonic(),
                age=now - claim.created_at,
                # Another process's breaker epochs mean nothing here: the owner is in the mark.
                mark_prefix=f"{self._owner}:",
            )
            if verdict.api_back:
                self._store.due_now(now)
            if verdict.retry_in is not None:
                self._store.reschedule(
                    claim.id,
                    self._owner,
                    due_at=now + verdict.retry_in,
                    attempts=claim.failures,
                    strikes=claim.strikes,
                    strike_mark=None if claim.strike_mark is None else str(claim.strike_mark),
                    may_have_arrived=claim.may_have_arrived,
                    error=result.reason,
                )
            elif verdict.final is None:
                self._store.delivered(claim.id)
            else:
                attempts = claim.failures + (result.outcome is not Outcome.RETRY)
                final = verdict.final
                self._store.dead_letter(claim.id, attempts, final.status, final.reason, now)
        if verdict.retry_in is not None:
            self._settlement.retrying(claim.goal, result, verdict.retry_in)
        elif verdict.final is None:
            self._settlement.delivered(claim.goal, result, maybe_duplicate=claim.may_have_arrived)
        else:
            self._settlement.failed(claim.goal, verdict.final)

    def _expire_goals(self) -> None:
        """Dead-letter goals past ``max_age`` and goals of another provider, with a warning."""
        now = time.time()
        try:
            with self._lock:
                if now < self._next_age_check:
                    return
                self._next_age_check = now + AGE_CHECK_INTERVAL
                moved = self._store.expire(self._provider, self._max_age, now)
        except sqlite3.Error:
            logger.exception("goaltrack: expiring old goals in the outbox %s failed", self.path)
            return
        if not moved:
            return
        reasons: dict[str, int] = {}
        for expired in moved:
            reasons[expired.reason] = reasons.get(expired.reason, 0) + 1
        for reason, count in reasons.items():
            logger.warning(
                "goaltrack: %d goal(s) in the outbox %s moved to the dead letters: %s; see "
                "`goaltrack outbox dead-letters`",
                count,
                self.path,
                reason,
            )
        for expired in moved:
            self._report_expired(expired)

    def _report_expired(self, expired: Expired) -> None:
        try:
            goal = decode_goal(expired.text)
        except (ValueError, TypeError, KeyError):
            return
        self._settlement.failed(goal, DeliveryResult(Outcome.FAILED, expired.reason))

    # -- fork ---------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # SQLite connections must not cross a fork: the child opens its own. The parent's are
        # kept referenced (never closed or collected here), as closing one could disturb the
        # parent's locks on the file.
        _abandoned.append(self._store.conn)
        self._settlement = self._settlement.fresh()
        self._reset_state()
        self._store.conn = connect(self.path)

    def _close_at_exit(self) -> None:
        self.close(self.shutdown_timeout)

    def __repr__(self) -> str:
        return f"<OutboxTransport {self.path!r} {self._endpoint!r} workers={len(self._threads)}>"


def _is_dead_local_owner(owner: str, host: str) -> bool:
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


#: Connections a forked child inherited: kept referenced, never closed (see _after_fork_in_child).
_abandoned: list[sqlite3.Connection] = []
