"""The outbox transport: goals committed to a SQLite file before ``track`` returns, then delivered.

``submit`` commits the goal to the outbox (stdlib ``sqlite3``, WAL) before it returns, so a goal
whose ``track()`` returned survives a crash, ``kill -9``, a deploy or an outage of any length.
Worker threads deliver from the file through :func:`goaltrack.delivery.deliver`, and settle each
attempt with :func:`goaltrack.retry.judge` like every transport; a goal's
:class:`~goaltrack.retry.RetryState` waits with it in the file (one column):

- rows belong to a destination (:class:`~goaltrack.transports.outbox.store.Identity`: provider,
  goals URL, key fingerprint): a tracker claims only its own, whatever else shares the file;
- a worker *claims* one goal at a time by setting a lease (owner + expiry) in one write
  transaction, so several processes sharing one file (gunicorn workers) deliver each goal once.
  The owner names the host, pid and the process's start time: a lease of a local process that
  ended (``os._exit``, ``kill -9``) is released within about a second, one of another host when
  it expires; the goal is then claimed again and counted as a possible duplicate;
- while the API is down, the workers probe it one request at a time and goals wait in the file
  without spending retries; the first answer makes every goal the outage held back due at once;
- ``flush`` waits for the goals this process stored, not for older goals of the file (another
  process's backlog, or rows a sibling leases): while it waits, this process's workers claim
  those goals first, so a forked child's flush does not queue behind its parent's backlog;
- delivered goals are deleted; transient failures wait in the file (``due_at``) for their retry;
  final failures (refused by the API, out of retries, older than ``max_age``) move to the
  ``dead_letters`` table (their reasons redacted), which ``goaltrack outbox ...`` works on;
- limits: at most ``max_goals`` goals wait (past that new goals are dropped, counted, and logged).

The request path never waits for the file's lock more than :data:`REQUEST_WAIT` (another process
writing, a ``sqlite3`` shell holding a transaction): the goal then waits in memory (at most
``max_memory``) and a worker writes it to the file. A file that cannot be written (disk full, a
file-size limit, made read-only) degrades the transport to in-memory delivery, with one ERROR;
goals already in the file are delivered from memory too, and one INFO line says when writes
succeed again.

Schedules use a :class:`~goaltrack.transports.outbox.store.ProcessClock` (monotonic within the
process): a wall-clock step neither stalls delivery nor expires goals early. Every time it reads
(schedules, leases, ages, the breaker's intervals) comes from its
:class:`~goaltrack.retry.Clock`, which a test may drive.

Across ``fork()``: no thread may be inside SQLite when the process forks, or the child could
inherit one of SQLite's process-wide mutexes held, and hang at its first connection. Every SQLite
call of the outbox runs inside a gate (:mod:`~goaltrack.transports.outbox.gate`); the hook below
takes each transport's locks, then closes the gate until the fork is done (waiting at most
:data:`FORK_WAIT` in all). The child keeps nothing of the parent's: it keeps the parent's
connections referenced without touching SQLite (never closed there), opens its own on first use,
and starts no thread and no scan at fork. No connection is left to the garbage collector (it
would close it on any thread, outside the gate): ``close`` closes the transport's.

``close`` does not drop anything: what is not delivered stays in the file for the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses

# getaddrinfo() imports this codec on its first call: were a worker thread importing it when
# the process forks, the child would inherit the module's import lock held, and hang at its
# first connection. Imported now, in the importing thread.
import encodings.idna  # noqa: F401
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Callable

from goaltrack.delivery import DeliveryResult, Endpoint, InvalidConfiguration, Outcome, deliver
from goaltrack.http_client import HttpPoster
from goaltrack.items import Tracked
from goaltrack.process import (
    at_fork,
    exiting,
    forget_at_exit,
    register_for_process_events,
    report_exit,
    start_thread,
)
from goaltrack.redaction import redact
from goaltrack.retry import (
    SYSTEM_CLOCK,
    Clock,
    InFlightLimit,
    RetryPolicy,
    RetryState,
    Ticket,
    Verdict,
    judge,
    new_breaker,
)
from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.base import Settlement, Stats
from goaltrack.transports.outbox import gate
from goaltrack.transports.outbox.store import (
    Expired,
    Identity,
    OutboxStore,
    ProcessClock,
    close,
    connect,
    decode_goal,
    encode_goal,
    is_contention,
    unusable,
)

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_GOALS", "DEFAULT_MAX_MEMORY", "OutboxTransport"]

logger = logging.getLogger("goaltrack")

DEFAULT_MAX_GOALS = 100_000
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
#: Goals held in memory at most while the file is locked or cannot be written.
DEFAULT_MAX_MEMORY = 10_000
#: The longest ``track`` waits for the file (its lock, then SQLite's) before using memory.
REQUEST_WAIT = 0.01
#: How long a worker's statement waits for another process's write transaction.
WORKER_BUSY_TIMEOUT = 0.25
#: How often an idle worker looks for goals other processes left (expired leases, restarts).
POLL_INTERVAL = 0.5
#: How often leases of ended local processes are looked for.
LEASE_CHECK_INTERVAL = 1.0
#: How often the age limit runs over the file.
AGE_CHECK_INTERVAL = 60.0
#: How often a file that could not be written is tried again (growing up to the maximum).
RECOVERY_INTERVAL = 1.0
RECOVERY_INTERVAL_MAX = 15.0
#: Longest the fork hook waits for a thread to leave SQLite.
FORK_WAIT = 5.0
_WARNING_INTERVAL = 10.0
_ERROR_INTERVAL = 60.0
_SPOOL_BATCH = 500
_FORGET_BATCH = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class _Claim:
    """A goal leased from the file for one attempt, with its retry state."""

    id: int
    goal: Tracked
    created_at: float
    state: RetryState
    ticket: Ticket


def identity_of(endpoint: Endpoint) -> Identity:
    """The destination whose rows a tracker with *endpoint* delivers (the key only hashed)."""
    return Identity(endpoint.provider.name, endpoint.url, endpoint.key_fp)


class OutboxTransport:
    """Deliver goals from a SQLite outbox file; see the module docstring for the guarantees.

    Raises :class:`~goaltrack.delivery.InvalidConfiguration` naming the path when the file
    cannot be an outbox (not a database, truncated, newer schema, cannot be written).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        retry: RetryPolicy,
        max_in_flight: int = 128,
        timeout: float = 5.0,
        shutdown_timeout: float = 3.0,
        flush_at_exit: bool = True,
        http: Callable[[], HttpPoster],
        max_goals: int = DEFAULT_MAX_GOALS,
        max_age: float = DEFAULT_MAX_AGE,
        max_memory: int = DEFAULT_MAX_MEMORY,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.path = os.fspath(path)
        self._endpoint = endpoint
        self.identity = identity_of(endpoint)
        self._settlement = settlement
        # The outbox keeps goals across restarts: its max_age is the time budget for transient
        # failures, in place of the in-memory give_up_after.
        self._retry = dataclasses.replace(retry, give_up_after=max_age)
        # A row due further ahead than any delay this process sets was scheduled by a clock
        # ahead of ours (a step back since): it is due now.
        self._horizon = max(2 * self._retry.backoff_max, 600.0)
        self._max_in_flight = max_in_flight
        self._new_http = http
        self._max_goals = max_goals
        self._max_age = max_age
        self._max_memory = max_memory
        self._flush_at_exit = flush_at_exit
        # Longer than one attempt can take (it is bounded by ``timeout`` in all).
        self._lease = 3 * timeout + 5.0
        self.shutdown_timeout = shutdown_timeout
        self._clock = clock  # schedules, intervals and the breaker
        # The file's times: wall-clock seconds, anchored once (see ProcessClock).
        self._file_clock = ProcessClock(None if clock is SYSTEM_CLOCK else clock)
        self._reset_state()
        # Creating the file may wait for other processes starting with it.
        conn = connect(self.path)  # InvalidConfiguration if unusable
        try:
            with gate.inside():
                conn.execute(f"PRAGMA busy_timeout = {int(REQUEST_WAIT * 1000)}")  # requests'
                self._check_writable(conn)
                left = OutboxStore(conn, self.identity).has_goals()
        except sqlite3.Error as exc:
            close(conn)
            raise unusable(self.path, exc) from exc
        self._req_store: OutboxStore | None = OutboxStore(conn, self.identity)
        register_for_process_events(self, close_at_exit=flush_at_exit)
        _live.add(self)
        if left:
            self._start_workers()  # what a previous run left

    def _check_writable(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not is_contention(exc):  # contention: another process is writing, so can we
                raise

    def _reset_state(self) -> None:
        self._req_lock = threading.Lock()
        self._work_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._req_store = None
        self._work_store: OutboxStore | None = None
        self._owner = _owner_name()
        self._pid = os.getpid()  # the process whose connections these are
        self._queued = {"goal": 0, "payment": 0}  # by kind
        self._depth = 0
        self._own_depth = 0
        self._added_since_check = 0
        # Rows this process stored and may still be in the file: what its flush waits for
        # (not the rows of the processes sharing the file, nor the parent's before a fork).
        # Counted, not a set: SQLite reuses the highest row id once its row is deleted, so an id
        # may be ours twice while we learn that its first row left. Forgotten only under the
        # work lock (see _forget_gone).
        self._own_rows: Counter[int] = Counter()
        self._wanted: frozenset[int] = frozenset()  # those a flush waits for: claimed first
        self._threads: list[threading.Thread] = []
        self._closed = False
        # This transport's own breaker, guarded by its work lock with the file's claims.
        self._breaker = new_breaker(self._retry, f"the API at {self._endpoint.url}")
        self._http: HttpPoster | None = None
        self._last_full_warning = 0.0
        self._unreported_full = 0
        now = self._clock.monotonic()
        self._next_age_check = now
        self._next_lease_check = now
        self._spool: deque[tuple[Tracked, str, float]] = deque()
        self._spool_busy = 0  # goals taken from the spool and being written
        self._fallback: BackgroundTransport | None = None
        self._degraded = False
        self._next_recovery = 0.0
        self._recovery_interval = RECOVERY_INTERVAL
        self._handed_over: set[int] = set()  # rows delivered from memory, to delete later
        self._next_handover = 0.0
        self._last_worker_error = -_ERROR_INTERVAL
        self._held_for_fork: list[threading.Lock] = []

    # -- the request path -------------------------------------------------------------------

    def submit(self, goal: Tracked) -> bool:
        if self._closed:
            self._settlement.dropped(goal, "the tracker is closed")
            return False
        if self._degraded:
            return self._to_memory(goal)
        if self._depth + self._added_since_check >= self._max_goals:
            self._refresh_depth(wait=REQUEST_WAIT)
            if self._depth + self._added_since_check >= self._max_goals:
                self._full(goal)
                return False
        text = encode_goal(goal)
        now = self._file_clock.now()
        if not self._req_lock.acquire(timeout=REQUEST_WAIT):
            return self._to_spool(goal, text, now)
        failure: Exception | None = None
        try:
            store = self._req_store or self._open_request_store()
            row_id = store.add(text, now)
            with self._state_lock:
                self._own_rows[row_id] += 1
            self._queued[goal.kind] += 1
            self._added_since_check += 1
        except (sqlite3.Error, InvalidConfiguration) as exc:
            failure = exc
        finally:
            self._req_lock.release()
        if failure is not None:
            if isinstance(failure, sqlite3.Error) and is_contention(failure):
                return self._to_spool(goal, text, now)
            self._storage_failed(failure)
            return self._to_memory(goal)
        self._wake()
        return True

    def _open_request_store(self) -> OutboxStore:
        self._req_store = OutboxStore(connect(self.path, timeout=REQUEST_WAIT), self.identity)
        return self._req_store

    def _wake(self) -> None:
        if not any(thread.is_alive() for thread in self._threads):
            self._start_workers()
        elif self._spool or self._breaker.would_admit(self._clock.monotonic()):
            # (else they sleep on: nothing can be sent before the next probe is due)
            with self._cond:
                self._cond.notify()

    def _to_spool(self, goal: Tracked, text: str, now: float) -> bool:
        """The file is busy: the goal waits in memory and a worker writes it to the file."""
        with self._state_lock:
            if len(self._spool) + self._spool_busy >= self._max_memory:
                full = True
            else:
                full = False
                self._spool.append((goal, text, now))
                self._queued[goal.kind] += 1
        if full:
            self._full(goal, where="memory")
            return False
        self._wake()
        return True

    def _to_memory(self, goal: Tracked) -> bool:
        """The file cannot be written: deliver *goal* from memory."""
        if self._fallback_transport().submit(goal):
            with self._state_lock:
                self._queued[goal.kind] += 1
            return True
        return False

    def _fallback_transport(self) -> BackgroundTransport:
        with self._state_lock:
            if self._fallback is None:
                self._fallback = BackgroundTransport(
                    self._endpoint,
                    self._settlement,
                    retry=self._retry,
                    max_queue_size=self._max_memory,
                    max_in_flight=self._max_in_flight,
                    shutdown_timeout=self.shutdown_timeout,
                    flush_at_exit=self._flush_at_exit,
                    http=self._new_http,
                    clock=self._clock,
                )
            return self._fallback

    def _storage_failed(self, exc: BaseException) -> None:
        """Writes to the file fail (disk full, read-only): degrade to memory, with one ERROR."""
        with self._state_lock:
            first = not self._degraded
            self._degraded = True
            self._next_recovery = self._clock.monotonic() + self._recovery_interval
            spooled = list(self._spool)
            self._spool.clear()
        if first:
            logger.error(
                "goaltrack: the outbox %s cannot be written (%s): goals are delivered from "
                "memory (not kept across restarts) until it can be written again",
                self.path,
                redact(exc),
            )
        for goal, _, _ in spooled:  # already counted as queued
            self._fallback_transport().submit(goal)

    def _full(self, goal: Tracked, where: str = "file") -> None:
        now = time.monotonic()
        with self._state_lock:
            self._unreported_full += 1
            warn = now - self._last_full_warning >= _WARNING_INTERVAL
            if warn:
                unreported, self._unreported_full = self._unreported_full, 0
                self._last_full_warning = now
        if warn:
            if where == "file":
                logger.warning(
                    "goaltrack outbox %s is full (%d goals waiting, max_goals=%d): dropped %d "
                    "goal(s); is the API reachable? see `goaltrack outbox status`",
                    self.path,
                    self._depth,
                    self._max_goals,
                    unreported,
                )
            else:
                logger.warning(
                    "goaltrack outbox %s: the file is busy and %d goals wait in memory already: "
                    "dropped %d goal(s)",
                    self.path,
                    self._max_memory,
                    unreported,
                )
        reason = (
            f"the outbox is full ({self._max_goals} goals waiting)"
            if where == "file"
            else f"the outbox is busy and {self._max_memory} goals wait in memory"
        )
        self._settlement.dropped(goal, reason)

    def _refresh_depth(self, wait: float = -1) -> int:
        if not self._req_lock.acquire(timeout=wait):
            return self._depth
        try:
            store = self._req_store or self._open_request_store()
            self._depth, self._added_since_check = store.depth(), 0
        except (sqlite3.Error, InvalidConfiguration):
            pass
        finally:
            self._req_lock.release()
        return self._depth

    def _still_stored(self, rows: set[int]) -> set[int]:
        """Which of this process's *rows* wait in the file (not handed over to memory)."""
        with self._work_lock:
            store = self._work_store or self._open_work_store()
            left = self._forget_gone(store, rows)
        with self._state_lock:
            return left - self._handed_over

    def _forget_gone(self, store: OutboxStore, rows: set[int]) -> set[int]:
        """Forget those of our *rows* no longer in the file; returns the others. Work lock held.

        Counted before the file is read: an id the request path stores again meanwhile (SQLite
        reuses the highest id) counts once more, and stays. Every forgetting holds the work
        lock, so none undoes another's.
        """
        with self._state_lock:
            seen = Counter({row: self._own_rows[row] for row in rows})
        left = store.remaining(rows)
        with self._state_lock:
            self._own_rows -= Counter({row: n for row, n in seen.items() if row not in left})
        return left

    @property
    def stats(self) -> Stats:
        try:
            with self._work_lock:
                store = self._work_store or self._open_work_store()
                self._own_depth = store.own_depth() - len(self._handed_over)
        except (sqlite3.Error, InvalidConfiguration):
            pass
        if self._closed:
            self._close_connections()  # read after close: no connection stays open
        pending = self._own_depth + len(self._spool) + self._spool_busy
        fallback = self._fallback
        if fallback is not None:
            pending += fallback.stats.pending
        return self._settlement.snapshot(pending=pending, queued=dict(self._queued))

    # -- flush and close ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the goals this process stored so far left the outbox (by any process)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._spool or self._spool_busy:  # goals still on their way to the file
            if not any(t.is_alive() for t in self._threads):
                self._drain_spool()
            if (self._spool or self._spool_busy) and not self._wait(deadline, 0.01):
                return False
        with self._state_lock:
            waiting = set(self._own_rows)
        try:
            while waiting:
                try:
                    if self._degraded and self._clock.monotonic() >= self._next_handover:
                        self._hand_over_rows()  # the file cannot be written: its rows go to memory
                    waiting = self._still_stored(waiting)
                except (sqlite3.Error, InvalidConfiguration) as exc:
                    self._storage_failed(exc)
                    break
                if not waiting:
                    break
                self._wanted = frozenset(waiting)  # this process's workers claim these first
                if not any(t.is_alive() for t in self._threads):
                    self._work(deadline=deadline, up_to=max(waiting))  # exit: no thread can start
                    continue
                if not self._wait(deadline, 0.05):
                    return False
        finally:
            self._wanted = frozenset()
            if self._closed:
                self._close_connections()  # a flush after close: no connection stays open
        fallback = self._fallback
        if fallback is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return fallback.flush(remaining)
        return True

    def _wait(self, deadline: float | None, step: float) -> bool:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        with self._cond:
            self._cond.wait(step if remaining is None else min(remaining, step))
        return True

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
        if self._spool:  # the file stayed locked throughout: the last chance to keep them
            self._drain_spool()
        fallback = self._fallback
        if fallback is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            flushed = fallback.close(remaining) and flushed
        http, self._http = self._http, None
        if http is not None:
            http.close()
        forget_at_exit(self)
        if not flushed:
            left = self._own_depth
            try:
                with self._work_lock:
                    store = self._work_store or self._open_work_store()
                    left = store.own_depth()
            except (sqlite3.Error, InvalidConfiguration):
                pass
            report_exit(self.stats, pending=left, lost=0, timeout=timeout, outbox=self.path)
        self._close_connections()
        return flushed

    def _close_connections(self) -> None:
        """Close this transport's connections (a worker still running opens its own again, and
        closes it as it stops): none is left to the garbage collector, see :mod:`.gate`."""
        with self._req_lock, self._work_lock:
            stores = (self._req_store, self._work_store)
            self._req_store = self._work_store = None
            for store in stores:
                if store is not None:
                    with contextlib.suppress(sqlite3.Error):
                        store.close()

    def __del__(self) -> None:
        # Dropped without close(): its connections are closed later, inside the gate, by this
        # process's next outbox connection; not here (a finalizer runs on any thread, any time).
        for name in ("_req_store", "_work_store"):
            store = getattr(self, name, None)
            if store is not None:
                gate.close_later(store.conn, self._pid)

    # -- workers ------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        with self._cond:
            if self._closed or sys.is_finalizing() or exiting():
                return
            if any(thread.is_alive() for thread in self._threads):
                return
            threads = [
                threading.Thread(target=self._run, name=f"goaltrack-outbox-{index}", daemon=True)
                for index in range(InFlightLimit(self._max_in_flight).start)
            ]
            self._threads = threads  # claimed: a concurrent submit starts no others
        for thread in threads:  # outside the lock: see start_thread
            if not start_thread(thread):  # interpreter shutting down
                break

    def _open_work_store(self) -> OutboxStore:
        self._work_store = OutboxStore(
            connect(self.path, timeout=WORKER_BUSY_TIMEOUT), self.identity
        )
        return self._work_store

    def _client(self) -> HttpPoster:
        http = self._http
        if http is None:
            with self._cond:
                if self._http is None:
                    self._http = self._new_http()
                http = self._http
        return http

    def _run(self) -> None:
        try:
            self._work()
        finally:
            if self._closed:  # the last connections it may have opened after close()
                self._close_connections()

    def _work(self, *, deadline: float | None = None, up_to: int | None = None) -> None:
        """A worker's loop; with *deadline*, the inline delivery of a flush at exit.

        Nothing that goes wrong in one turn ends the loop: it is logged (at most once a minute)
        and the worker goes on.
        """
        while not (self._closed and deadline is None):
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                wait = self._turn(up_to)
            except BaseException as exc:  # a hook calling sys.exit() included: no thread dies
                if deadline is not None and not isinstance(exc, Exception):
                    raise  # inline at exit: an interrupt ends the flush
                if self._closed:
                    return
                now = time.monotonic()
                if now - self._last_worker_error >= _ERROR_INTERVAL:
                    self._last_worker_error = now
                    logger.exception(
                        "goaltrack: an outbox worker for %s failed; it goes on", self.path
                    )
                wait = POLL_INTERVAL
            if wait <= 0:
                continue
            if deadline is not None:
                if up_to is not None and not self._still_stored(set(self._wanted)):
                    return
                wait = min(wait, deadline - time.monotonic())
                if wait > 0:
                    time.sleep(wait)  # inline at exit: no other thread to wake us
                continue
            with self._cond:
                if not self._closed and not self._spool:
                    self._cond.wait(max(0.001, min(wait, POLL_INTERVAL)))

    def _turn(self, up_to: int | None) -> float:
        """One step of a worker: housekeeping, then at most one delivery. Returns the wait."""
        if self._spool:
            self._drain_spool()
        now = self._clock.monotonic()
        if self._degraded:
            if now >= self._next_recovery:
                self._try_recovery()
            if self._degraded:
                if now >= self._next_handover:
                    with contextlib.suppress(sqlite3.Error, InvalidConfiguration):
                        self._hand_over_rows()  # unreadable too: only the recovery can help
                return POLL_INTERVAL
        try:
            if now >= self._next_lease_check:
                self._housekeeping(now)
            if now >= self._next_age_check:
                self._expire_goals()
            claim, wait = self._claim(up_to)
        except (sqlite3.Error, InvalidConfiguration) as exc:
            if not (isinstance(exc, sqlite3.Error) and is_contention(exc)):
                self._storage_failed(exc)
            return 0.05  # the file's lock is held elsewhere: try again soon
        if claim is None:
            return wait
        self._attempt(claim)
        return 0.0

    def _drain_spool(self) -> None:
        """Write the goals that waited in memory to the file, in one transaction."""
        with self._state_lock:
            batch = [self._spool.popleft() for _ in range(min(len(self._spool), _SPOOL_BATCH))]
            self._spool_busy += len(batch)
        if not batch:
            return
        try:
            with self._work_lock:
                store = self._work_store or self._open_work_store()
                ids = store.add_many((text, created) for _, text, created in batch)
        except (sqlite3.Error, InvalidConfiguration) as exc:
            with self._state_lock:
                self._spool.extendleft(reversed(batch))
                self._spool_busy -= len(batch)
            if isinstance(exc, sqlite3.Error) and is_contention(exc):
                time.sleep(0.01)  # the file's lock is held elsewhere: try again soon
                return
            self._storage_failed(exc)
            return
        with self._state_lock:
            self._own_rows.update(ids)
            self._added_since_check += len(batch)
            self._spool_busy -= len(batch)
        with self._cond:
            self._cond.notify_all()

    def _try_recovery(self) -> None:
        with self._state_lock:  # one worker probes; the others wait for its answer
            now = self._clock.monotonic()
            if not self._degraded or now < self._next_recovery:
                return
            self._next_recovery = now + self._recovery_interval
        with self._state_lock:
            handed_over = set(self._handed_over)
        try:
            with self._work_lock:
                store = self._work_store or self._open_work_store()
                if handed_over:
                    store.delete(handed_over)
                else:
                    store.probe_write()
        except (sqlite3.Error, InvalidConfiguration):
            with self._state_lock:
                self._recovery_interval = min(RECOVERY_INTERVAL_MAX, self._recovery_interval * 2)
                self._next_recovery = self._clock.monotonic() + self._recovery_interval
            return
        with self._state_lock:
            self._handed_over -= handed_over
            recovered, self._degraded = self._degraded, False
            self._recovery_interval = RECOVERY_INTERVAL
        if recovered:
            logger.info("goaltrack: the outbox %s can be written again; goals go to it", self.path)

    def _hand_over_rows(self) -> None:
        """The file cannot be written: deliver the rows waiting in it from memory."""
        self._next_handover = self._clock.monotonic() + POLL_INTERVAL
        fallback = self._fallback_transport()
        room = self._max_memory // 2 - fallback.stats.pending
        if room <= 0:
            return
        with self._work_lock:
            store = self._work_store or self._open_work_store()
            rows = store.peek(self._file_clock.now(), self._handed_over, min(room, 200))
        for row_id, text in rows:
            with self._state_lock:
                self._handed_over.add(row_id)
            try:
                goal = decode_goal(text)
            except (ValueError, TypeError, KeyError):
                continue
            fallback.submit(goal)

    def _housekeeping(self, now: float) -> None:
        """Release leases of ended local processes; forget our rows others delivered."""
        self._next_lease_check = now + LEASE_CHECK_INTERVAL
        host = socket.gethostname()
        with self._work_lock:
            store = self._work_store or self._open_work_store()
            owners = store.leases(self._file_clock.now())
            with self._state_lock:
                oldest = sorted(self._own_rows)[:_FORGET_BATCH]
            if oldest:  # our rows other processes delivered: what a flush checks stays small
                self._forget_gone(store, set(oldest))
        dead = [owner for owner in owners if _is_dead_local_owner(owner, host)]
        if dead:
            with self._work_lock:
                store.release(dead)
            logger.info("goaltrack: re-delivering goals left by %d ended process(es)", len(dead))

    def _claim(self, up_to: int | None) -> tuple[_Claim | None, float]:
        """Lease the next due goal, once the breaker admits a request; else (None, wait)."""
        with self._work_lock:
            now = self._clock.monotonic()
            ticket = self._breaker.admit(now)
            if ticket is None:
                return None, (self._breaker.wake_at or now) - now
            try:
                store = self._work_store or self._open_work_store()
                wall = self._file_clock.now()
                stored, next_due = store.claim(
                    self._owner, self._lease, wall, self._horizon, up_to, self._wanted
                )
            except BaseException:
                self._breaker.release(ticket)
                raise
            if stored is None:
                self._breaker.release(ticket)  # nothing to send on it
        if stored is None:
            wait = POLL_INTERVAL if next_due is None else next_due - wall
            return None, min(POLL_INTERVAL, wait)
        try:
            goal = decode_goal(stored.text)
            state = RetryState.from_json(stored.retry)
            created_at = float(stored.created_at)
        except (ValueError, TypeError, KeyError) as exc:
            with self._work_lock:
                self._breaker.release(ticket)
                store.dead_letter(
                    stored.id, 0, None, f"unreadable stored goal: {exc}", self._file_clock.now()
                )
            return None, 0.0
        if stored.taken_over:
            state = state.with_lost_attempt()
        return _Claim(stored.id, goal, created_at, state, ticket), 0.0

    def _attempt(self, claim: _Claim) -> None:
        try:
            result = deliver(claim.goal, self._endpoint, self._client())
        except Exception as exc:  # a bug of ours must not kill the worker or lose the goal
            logger.exception("goaltrack: unexpected error delivering %s", claim.goal.label)
            result = DeliveryResult(Outcome.RETRY, f"unexpected error: {type(exc).__name__}")
        self._settle(claim, result)
        with self._cond:
            self._cond.notify_all()

    def _settle(self, claim: _Claim, result: DeliveryResult) -> None:
        with self._work_lock:
            wall = self._file_clock.now()
            verdict = judge(
                self._breaker,
                self._retry,
                claim.state,
                claim.ticket,
                result,
                now=self._clock.monotonic(),
                age=wall - claim.created_at,
                # Another process's breaker epochs mean nothing here: the owner is in the mark.
                mark_prefix=f"{self._owner}:",
            )
        give_up_at = time.monotonic() + self._lease / 2
        while True:
            try:
                with self._work_lock:
                    self._record(claim, result, verdict)
                break
            except (sqlite3.Error, InvalidConfiguration) as exc:
                if isinstance(exc, sqlite3.Error) and is_contention(exc):
                    if time.monotonic() < give_up_at:
                        time.sleep(0.02)  # another process holds the file: soon ours again
                        continue
                    # The goal stays leased; when the lease ends it is delivered again.
                    logger.warning(
                        "goaltrack: the outbox %s stayed locked; %s is sent again later",
                        self.path,
                        claim.goal.label,
                    )
                    return
                self._storage_failed(exc)
                with self._state_lock:
                    self._handed_over.add(claim.id)
                if verdict.retry_in is not None:
                    self._settlement.retrying(claim.goal, _redacted(result), verdict.retry_in)
                    self._fallback_transport().submit(claim.goal)
                    return
                break
        if verdict.retry_in is not None:
            self._settlement.retrying(claim.goal, _redacted(result), verdict.retry_in)
        elif verdict.final is None:
            self._settlement.delivered(
                claim.goal, result, maybe_duplicate=verdict.state.may_have_arrived
            )
        else:
            self._settlement.failed(claim.goal, _redacted(verdict.final))

    def _record(self, claim: _Claim, result: DeliveryResult, verdict: Verdict) -> None:
        """Write *verdict* on *claim* to the file: rescheduled with its state, or settled."""
        store = self._work_store or self._open_work_store()
        wall = self._file_clock.now()
        if verdict.api_back:
            store.due_now(wall)
        final = verdict.final
        if verdict.retry_in is not None:
            store.reschedule(
                claim.id,
                self._owner,
                due_at=wall + verdict.retry_in,
                state=verdict.state,
                error=result.reason,
            )
        else:
            # Settled: a flush stops waiting for it. Forgotten before the row is deleted, so
            # a row the request path stores next, under the same id, is not forgotten with it.
            with self._state_lock:
                self._own_rows -= Counter({claim.id: 1})
            if final is None:
                store.delivered(claim.id)
            else:
                attempts = verdict.state.failures + (result.outcome is not Outcome.RETRY)
                store.dead_letter(claim.id, attempts, final.status, final.reason, wall)

    def _expire_goals(self) -> None:
        """Dead-letter this tracker's goals past ``max_age``, with a warning."""
        self._next_age_check = self._clock.monotonic() + AGE_CHECK_INTERVAL
        try:
            with self._work_lock:
                store = self._work_store or self._open_work_store()
                moved = store.expire(self._max_age, self._file_clock.now())
        except sqlite3.Error as exc:
            if not is_contention(exc):
                self._storage_failed(exc)
            return
        if not moved:
            return
        logger.warning(
            "goaltrack: %d goal(s) in the outbox %s moved to the dead letters: %s; see "
            "`goaltrack outbox dead-letters`",
            len(moved),
            self.path,
            moved[0].reason,
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

    def _before_fork(self, deadline: float) -> None:
        # Our threads finish what they do in the file (the gate, closed next, waits for the
        # others): the child's copy of this transport's state is then between two operations.
        for lock in (self._req_lock, self._work_lock):
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self._held_for_fork.append(lock)

    def _after_fork_in_parent(self) -> None:
        held, self._held_for_fork = self._held_for_fork, []
        for lock in held:
            lock.release()

    def _after_fork_in_child(self) -> None:
        # No SQLite call here: the parent's connections are dropped (kept referenced, never
        # closed or collected, since closing one would release the parent's locks on the file)
        # and the child opens its own on first use. New locks, no thread, no scan.
        for store in (self._req_store, self._work_store):
            if store is not None:
                gate.inherited.append(store.conn)
        fallback = self._fallback
        if fallback is not None:
            forget_at_exit(fallback)
        closed = self._closed
        self._settlement = self._settlement.fresh()
        self._reset_state()
        self._closed = closed  # a tracker closed before the fork stays closed in the child

    def _close_at_exit(self) -> None:
        self.close(self.shutdown_timeout)

    def __repr__(self) -> str:
        return f"<OutboxTransport {self.path!r} {self._endpoint!r} workers={len(self._threads)}>"


def _redacted(result: DeliveryResult) -> DeliveryResult:
    """*result* with its reason (text from the network) redacted, for logs and hooks."""
    return dataclasses.replace(result, reason=redact(result.reason))


_ZOMBIE = "zombie"


def _start_token(pid: int) -> str:
    """When process *pid* started (clock ticks since boot), or "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            fields = file.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    if fields[0] == b"Z":
        return _ZOMBIE
    return fields[19].decode()


def _owner_name() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_token(pid)}:{uuid.uuid4().hex[:8]}"


def _is_dead_local_owner(owner: str, host: str) -> bool:
    """True when *owner* names a process of this host that ended (or whose pid was reused)."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4:
        return False
    owner_host, pid_text, token, _ = parts
    if owner_host != host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        pass
    now_token = _start_token(pid)
    if now_token == _ZOMBIE:
        return True
    return bool(token and now_token and token != now_token)


_live: weakref.WeakSet[OutboxTransport] = weakref.WeakSet()


def _before_fork() -> None:
    # First each transport's locks (its threads finish their turn in the file), then the gate:
    # no thread at all inside SQLite (an administration, a connection being opened or closed).
    # A thread inside the gate never waits for a transport's lock, so this order cannot deadlock.
    deadline = time.monotonic() + FORK_WAIT
    for transport in list(_live):
        transport._before_fork(deadline)
    if not gate.close(max(0.0, deadline - time.monotonic())):
        logger.debug("goaltrack: forking while a thread is still inside SQLite")


def _after_fork_in_parent() -> None:
    gate.reopen()
    for transport in list(_live):
        transport._after_fork_in_parent()


def _after_fork_in_child() -> None:
    gate.renew()  # registered at import: before any hook of the application may use the outbox


at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
