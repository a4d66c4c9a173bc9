"""The durable transport: goals go through a SQLite outbox file before they go to the API.

``submit`` commits the goal to the outbox (stdlib ``sqlite3``, WAL) before it returns, so a goal
whose ``track()`` returned survives a crash, ``kill -9``, a deploy or an outage of any length.
Worker threads deliver from the file through :func:`goaltrack.delivery.deliver`, with the same
:class:`~goaltrack.delivery.RetryPolicy` and final-failure rules as the in-memory transport:

- a worker *claims* one goal at a time by setting a lease (owner + expiry) in one write
  transaction, so several processes sharing one file (gunicorn workers) deliver each goal once;
  a lease held by a process that died expires and the goal is claimed again (and counted as a
  possible duplicate: the dead process may have sent it);
- delivered goals are deleted; transient failures wait in the file (``due_at``) for their retry;
  final failures (refused by the API, out of retries, older than ``max_age``) move to the
  ``dead_letters`` table, which ``goaltrack outbox dead-letters|retry|purge`` work on;
- limits: at most ``max_goals`` goals wait (past that new goals are dropped, counted, and logged),
  and goals older than ``max_age`` seconds are dead-lettered with a warning;
- a restarted process delivers what a killed one left; a forked child opens its own connections.

``close`` does not drop anything: what is not delivered stays in the file for the next start.
Commits use ``synchronous=OFF``: durable across process crashes (``kill -9``, OOM kills), not
across the machine losing power.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from goaltrack.delivery import (
    DeliveryResult,
    Endpoint,
    Outcome,
    RetryGate,
    RetryPolicy,
    deliver,
)
from goaltrack.goals import Goal
from goaltrack.http_client import HttpClient
from goaltrack.providers import get_provider
from goaltrack.transports.base import (
    Settlement,
    Stats,
    exiting,
    forget_at_exit,
    register_for_process_events,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_GOALS",
    "DeadLetter",
    "Outbox",
    "OutboxStatus",
    "OutboxTransport",
]

logger = logging.getLogger("goaltrack")

DEFAULT_MAX_GOALS = 100_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
#: How often an idle worker looks for goals other processes left (expired leases, restarts).
POLL_INTERVAL = 0.5
#: How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 5_000
_NO_LIMIT = 2**62
AGE_CHECK_INTERVAL = 60.0
_WARNING_INTERVAL = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS goals (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    may_have_arrived INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS goals_by_due ON goals (target, due_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL
);
"""


def encode_goal(goal: Goal) -> str:
    """The goal as stored: its validated fields and provider name (never the API key)."""
    return json.dumps(
        [
            goal.provider.name,
            goal.name,
            goal.visitor_id,
            goal.session_id,
            dict(goal.metadata) if goal.metadata else None,
            goal.description,
            goal.timezone,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_goal(text: str) -> Goal:
    """A stored goal back as a :class:`Goal` (already validated when it was stored)."""
    provider, name, visitor_id, session_id, metadata, description, timezone = json.loads(text)
    return Goal(
        get_provider(provider), name, visitor_id, session_id, metadata, description, timezone
    )


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to the outbox at *path* (created if need be), in WAL mode, autocommit."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        os.fspath(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,  # shared by this process's threads, under the transport's lock
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # Each commit is written to the file before ``track`` returns, so it survives the process
    # (kill -9, OOM); without fsyncs (a commit costs a few writes, not a disk flush) it may not
    # survive the machine losing power.
    conn.execute("PRAGMA synchronous=OFF")
    (tables,) = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name IN ('goals', 'dead_letters')"
    ).fetchone()
    if tables < 2:
        with _write(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
    return conn


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (no deadlock-prone read-then-upgrade)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class OutboxStatus:
    """What ``goaltrack outbox status`` shows."""

    path: str
    waiting: int
    leased: int
    retrying: int
    oldest_age: float | None
    """Seconds since the oldest waiting goal was tracked."""
    dead_letters: int


@dataclass(frozen=True)
class DeadLetter:
    id: int
    goal: Goal
    created_at: float
    failed_at: float
    attempts: int
    status: int | None
    reason: str


class Outbox:
    """Administration of an outbox file: status, dead letters, retry, purge. No API key needed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn = connect(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def status(self) -> OutboxStatus:
        now = time.time()
        waiting, leased, retrying, oldest = self._conn.execute(
            "SELECT count(*), sum(lease_until > ?), sum(attempts > 0 AND lease_until <= ?),"
            " min(created_at) FROM goals",
            (now, now),
        ).fetchone()
        (dead,) = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        return OutboxStatus(
            self.path,
            waiting,
            leased or 0,
            retrying or 0,
            None if oldest is None else max(0.0, now - oldest),
            dead,
        )

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT id, goal, created_at, failed_at, attempts, status, reason"
            " FROM dead_letters ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [DeadLetter(row[0], decode_goal(row[1]), *row[2:]) for row in rows]

    def retry_dead_letters(self, ids: list[int] | None = None) -> int:
        """Move dead letters (all, or those *ids*) back to the outbox with fresh attempts."""
        now = time.time()
        chosen = None if ids is None else json.dumps(ids)
        with _write(self._conn) as conn:
            conn.execute(
                "INSERT INTO goals (target, goal, created_at, due_at) SELECT target, goal, ?, ?"
                " FROM dead_letters WHERE (? IS NULL OR id IN (SELECT value FROM json_each(?)))"
                " ORDER BY id",
                (now, now, chosen, chosen),
            )
            moved = conn.execute(
                "DELETE FROM dead_letters"
                " WHERE (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                (chosen, chosen),
            ).rowcount
        return int(moved)

    def purge(self, *, dead_letters: bool = True, waiting: bool = False) -> int:
        """Delete dead letters and/or goals still waiting for delivery; returns how many."""
        removed = 0
        with _write(self._conn) as conn:
            if dead_letters:
                removed += conn.execute("DELETE FROM dead_letters").rowcount
            if waiting:
                removed += conn.execute("DELETE FROM goals").rowcount
        return removed


class _Claim:
    __slots__ = ("attempts", "created_at", "goal", "id", "may_have_arrived")

    def __init__(
        self, row_id: int, goal: Goal, attempts: int, may_have_arrived: bool, created_at: float
    ) -> None:
        self.id = row_id
        self.goal = goal
        self.attempts = attempts
        self.may_have_arrived = may_have_arrived
        self.created_at = created_at


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
        proxy: str | None = None,
        max_goals: int = DEFAULT_MAX_GOALS,
        max_age: float = DEFAULT_MAX_AGE,
        lease: float | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._endpoint = endpoint
        self._target = endpoint.url
        self._settlement = settlement
        self._retry = retry
        self._max_in_flight = max_in_flight
        self._timeout = timeout
        self._proxy = proxy
        self._max_goals = max_goals
        self._max_age = max_age
        # Longer than one attempt can take (connect + write + read, each up to ``timeout``).
        self._lease = lease if lease is not None else 3 * timeout + 5.0
        self.shutdown_timeout = shutdown_timeout
        self._reset_state()
        self._conn = connect(self.path)  # fails now, at configuration, if the file is unusable
        register_for_process_events(self, close_at_exit=flush_at_exit)
        if self._has_goals():
            self._release_dead_owners_leases()
            self._start_workers()  # what a previous run left

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._queued = 0
        self._depth = 0
        self._depth_checked_at = 0.0
        self._added_since_check = 0
        self._last_id = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._gate = RetryGate(self._retry)
        self._http: HttpClient | None = None
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
                cursor = self._conn.execute(
                    "INSERT INTO goals (target, goal, created_at, due_at) VALUES (?, ?, ?, ?)",
                    (self._target, text, now, now),
                )
                self._last_id = cursor.lastrowid or self._last_id
                self._queued += 1
                self._added_since_check += 1
        except sqlite3.Error as exc:
            self._settlement.dropped(goal, f"the outbox could not store it: {exc}")
            return False
        if not self._threads:
            self._start_workers()
        elif self._gate.not_before <= time.monotonic():  # while the API is down, let workers sleep
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
            (depth,) = self._conn.execute(
                "SELECT count(*) FROM goals WHERE target = ?", (self._target,)
            ).fetchone()
            self._depth, self._added_since_check = int(depth), 0
            self._depth_checked_at = time.monotonic()
        return self._depth

    def _release_dead_owners_leases(self) -> None:
        """Leases held by processes of this host that no longer exist end now, not at expiry.

        (A pid reused by an unrelated process only means waiting for the lease to expire.)
        """
        host = socket.gethostname()
        with self._lock:
            owners = self._conn.execute(
                "SELECT DISTINCT lease_owner FROM goals WHERE lease_until > ?", (time.time(),)
            ).fetchall()
        dead = [owner for (owner,) in owners if owner and _is_dead_local_owner(owner, host)]
        if dead:
            with self._lock, _write(self._conn) as conn:
                conn.executemany(
                    "UPDATE goals SET lease_until = 0 WHERE lease_owner = ?",
                    [(owner,) for owner in dead],
                )
            logger.info("goaltrack: re-delivering goals left by %d ended process(es)", len(dead))

    def _has_goals(self) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM goals WHERE target = ? LIMIT 1", (self._target,)
            ).fetchone()
        return row is not None

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
            if not self._waiting_up_to(last_id):
                return True
            if not any(t.is_alive() for t in self._threads):
                self._work(deadline=deadline, up_to=last_id)  # exit time: no thread can start
                if not self._waiting_up_to(last_id):
                    return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(POLL_INTERVAL if remaining is None else min(remaining, 0.05))

    def _waiting_up_to(self, last_id: int) -> bool:
        if last_id == 0:
            return False
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM goals WHERE target = ? AND id <= ? LIMIT 1",
                (self._target, last_id),
            ).fetchone()
        return row is not None

    def close(self, timeout: float | None = None) -> bool:
        """Flush within *timeout*, then stop; undelivered goals stay in the outbox file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        http, self._http = self._http, None
        if http is not None:
            http.close()
        forget_at_exit(self)
        if not flushed:
            left = self._refresh_depth()
            logger.warning(
                "goaltrack: %d goal(s) not delivered yet stay in the outbox %s for the next start",
                left,
                self.path,
            )
        return flushed

    # -- workers ------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        with self._cond:
            if self._threads or self._closed or sys.is_finalizing() or exiting():
                return
            for index in range(self._max_in_flight):
                thread = threading.Thread(
                    target=self._work, name=f"goaltrack-outbox-{index}", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutting down
                    break
                self._threads.append(thread)

    def _client(self) -> HttpClient:
        http = self._http
        if http is None:
            with self._cond:
                if self._http is None:
                    self._http = HttpClient(
                        timeout=self._timeout,
                        proxy=self._proxy,
                        target_url=self._endpoint.url,
                    )
                http = self._http
        return http

    def _work(self, *, deadline: float | None = None, up_to: int | None = None) -> None:
        """A worker's loop; with *deadline*, the inline delivery of a flush at exit."""
        while not (self._closed and deadline is None):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if time.time() >= self._next_age_check:
                self._expire_old_goals()
            wait = self._gate.not_before - now
            claim = None
            if wait <= 0:
                try:
                    claim, wait = self._claim(up_to)
                except sqlite3.Error:
                    logger.exception("goaltrack: reading the outbox %s failed", self.path)
                    wait = 1.0
            if claim is not None:
                self._attempt(claim)
                continue
            if deadline is not None:
                if up_to is not None and not self._waiting_up_to(up_to):
                    return
                wait = min(wait, deadline - time.monotonic())
                if wait > 0:
                    time.sleep(wait)  # inline at exit: no other thread to wake us
                continue
            with self._cond:
                if not self._closed:
                    self._cond.wait(max(0.001, min(wait, POLL_INTERVAL)))

    def _claim(self, up_to: int | None) -> tuple[_Claim | None, float]:
        """Lease the next due goal; else (None, seconds until one may be due)."""
        conn = self._conn
        now = time.time()
        last_id = _NO_LIMIT if up_to is None else up_to
        with self._lock, _write(conn):
            row = conn.execute(
                "UPDATE goals SET lease_owner = ?, lease_until = ?,"
                " may_have_arrived = may_have_arrived OR lease_owner IS NOT NULL"
                " WHERE id = (SELECT id FROM goals WHERE target = ? AND due_at <= ?"
                " AND lease_until <= ? AND id <= ? ORDER BY due_at, id LIMIT 1)"
                " RETURNING id, goal, attempts, may_have_arrived, created_at",
                (self._owner, now + self._lease, self._target, now, now, last_id),
            ).fetchone()
            if row is None:
                # The next retry due (the index answers at once); goals leased by other
                # processes are looked at again at the next poll.
                nxt = conn.execute(
                    "SELECT min(due_at) FROM goals WHERE target = ? AND due_at > ?",
                    (self._target, now),
                ).fetchone()[0]
        if row is None:
            return None, POLL_INTERVAL if nxt is None else min(POLL_INTERVAL, nxt - now)
        try:
            goal = decode_goal(row[1])
        except (ValueError, TypeError, KeyError) as exc:
            self._dead_letter(row[0], row[2], None, f"unreadable stored goal: {exc}")
            return None, 0.0
        return _Claim(row[0], goal, row[2], bool(row[3]), row[4]), 0.0

    def _attempt(self, claim: _Claim) -> None:
        try:
            result = deliver(claim.goal, self._endpoint, self._client())
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
        attempts = claim.attempts + 1
        if result.outcome is Outcome.DELIVERED:
            with self._lock:
                self._conn.execute("DELETE FROM goals WHERE id = ?", (claim.id,))
            with self._cond:
                self._gate.succeeded()
            self._settlement.delivered(claim.goal, result, maybe_duplicate=claim.may_have_arrived)
            return
        if result.outcome is Outcome.RETRY:
            delay = self._retry.delay_before_retry(attempts, result)
            if delay is not None:
                self._schedule_retry(claim, attempts, result, delay)
                return
            result = self._retry.gave_up(attempts, result)
        self._dead_letter(claim.id, attempts, result.status, result.reason)
        self._settlement.failed(claim.goal, result)

    def _schedule_retry(
        self,
        claim: _Claim,
        attempts: int,
        result: DeliveryResult,
        delay: float,
    ) -> None:
        self._settlement.count("retried")
        with self._lock:
            self._conn.execute(
                "UPDATE goals SET attempts = ?, due_at = ?, lease_owner = NULL, lease_until = 0,"
                " may_have_arrived = ?, last_error = ? WHERE id = ? AND lease_owner = ?",
                (
                    attempts,
                    time.time() + delay,
                    claim.may_have_arrived or result.may_have_arrived,
                    result.reason[:300],
                    claim.id,
                    self._owner,
                ),
            )
        with self._cond:
            now = time.monotonic()
            self._gate.failed(result, now)

    def _dead_letter(self, row_id: int, attempts: int, status: int | None, reason: str) -> None:
        with self._lock, _write(self._conn) as conn:
            conn.execute(
                "INSERT INTO dead_letters"
                " (target, goal, created_at, failed_at, attempts, status, reason)"
                " SELECT target, goal, created_at, ?, ?, ?, ? FROM goals WHERE id = ?",
                (time.time(), attempts, status, reason[:300], row_id),
            )
            conn.execute("DELETE FROM goals WHERE id = ?", (row_id,))

    def _expire_old_goals(self) -> None:
        """Dead-letter goals older than ``max_age``, with a warning: they will not be sent."""
        now = time.time()
        reason = f"older than the outbox's max_age ({self._max_age:g} s); not sent"
        try:
            with self._lock, _write(self._conn) as conn:
                if now < self._next_age_check:
                    return
                self._next_age_check = now + AGE_CHECK_INTERVAL
                rows = conn.execute(
                    "DELETE FROM goals WHERE target = ? AND created_at < ? AND lease_until <= ?"
                    " RETURNING target, goal, created_at, attempts",
                    (self._target, now - self._max_age, now),
                ).fetchall()
                conn.executemany(
                    "INSERT INTO dead_letters"
                    " (target, goal, created_at, failed_at, attempts, status, reason)"
                    " VALUES (?, ?, ?, ?, ?, NULL, ?)",
                    [
                        (target, text, created, now, attempts, reason)
                        for target, text, created, attempts in rows
                    ],
                )
        except sqlite3.Error:
            logger.exception("goaltrack: expiring old goals in the outbox %s failed", self.path)
            return
        if not rows:
            return
        logger.warning(
            "goaltrack: %d goal(s) in the outbox %s were older than max_age (%g s) and moved "
            "to the dead letters; see `goaltrack outbox dead-letters`",
            len(rows),
            self.path,
            self._max_age,
        )
        for _, text, _, _ in rows:
            try:
                goal = decode_goal(text)
            except (ValueError, TypeError, KeyError):
                continue
            self._settlement.failed(goal, DeliveryResult(Outcome.FAILED, reason))

    # -- fork ---------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # SQLite connections must not cross a fork: the child opens its own. The parent's are
        # kept referenced (never closed or collected here), as closing one could disturb the
        # parent's locks on the file.
        _abandoned.append(self._conn)
        self._settlement = self._settlement.fresh()
        self._reset_state()
        self._conn = connect(self.path)

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
