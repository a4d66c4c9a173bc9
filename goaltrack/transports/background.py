"""The default transport: a bounded in-memory queue drained by a few daemon threads.

- ``submit`` costs a lock and a deque append; it never touches the network and never blocks.
- Workers start on the first goal, one per in-flight request, sharing one pool of keep-alive
  connections. How many requests go at once is an :class:`~goaltrack.retry.InFlightLimit`: 4
  to begin with, one more per goal delivered while others wait (a worker is started for it),
  up to ``max_in_flight``; halved at each failure. Light traffic keeps 4 workers; an app that
  tracks faster than 4 requests can deliver gets the workers it needs.
- A goal that failed transiently waits in a retry heap until it is due, with the
  :class:`~goaltrack.retry.RetryState` that :func:`~goaltrack.retry.judge` gave it. The
  workers share one :class:`~goaltrack.retry.CircuitBreaker`: while the API is down it is
  probed with one request at a time (at most one per ``probe_interval_max``), goals wait without
  spending retries, and the first answer puts every worker back to work at once.
- Memory is bounded: queued + waiting-to-retry goals never exceed ``max_queue_size``; past that
  new goals are dropped, counted, reported to ``on_drop`` and logged (summarized periodically).
- A forked child (gunicorn ``--preload``, multiprocessing) gets fresh locks, an empty queue and
  its own workers, and never re-sends the parent's goals.
- A refused key (401/403) opens the same breaker: goals are held, one probe goes every few
  seconds (up to ``refused_probe_interval_max``), and they are all delivered once a probe is
  accepted, or fail with the status once the key has been refused for ``refusal_give_up``.
- A worker thread that dies (a bug of ours) is logged with its traceback and replaced; its goal
  is held again. ``flush()`` from a worker thread (a hook) returns False at once.
- ``threads=False`` (the courier process, :mod:`goaltrack.transports.courier.child`): no thread
  is started; an event loop takes each admitted goal with :meth:`take_ready` and settles its
  answer with :meth:`finish`, under the same limit, breaker and retry rules.
- At interpreter exit pending goals are flushed within ``shutdown_timeout``; no thread is started
  then (Python 3.12+ refuses): the exiting thread delivers what is left itself.
"""

from __future__ import annotations

import heapq
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from goaltrack.delivery import DeliveryResult, Endpoint, Outcome, deliver
from goaltrack.http_client import HttpPoster
from goaltrack.items import Tracked
from goaltrack.process import (
    count_live,
    exiting,
    flush_would_deadlock,
    forget_at_exit,
    forget_live,
    mark_delivery_thread,
    register_for_process_events,
    report_exit,
    start_thread,
    warn_if_threads_cannot_run,
)
from goaltrack.retry import (
    SYSTEM_CLOCK,
    BreakerState,
    Clock,
    InFlightLimit,
    RetryPolicy,
    RetryState,
    Ticket,
    judge,
    new_breaker,
)
from goaltrack.transports.base import Settlement, Stats

__all__ = ["BackgroundTransport"]

logger = logging.getLogger("goaltrack")


class _Item:
    """A goal held in memory, with its retry state (which only ``judge`` changes)."""

    __slots__ = ("created", "due", "goal", "seq", "state", "ticket")

    def __init__(self, seq: int, goal: Tracked, created: float) -> None:
        self.seq = seq
        self.goal = goal
        self.created = created
        self.due = 0.0
        self.ticket: Ticket | None = None
        self.state = RetryState()

    def __lt__(self, other: _Item) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class BackgroundTransport:
    """Deliver goals from daemon threads; see the module docstring for the guarantees."""

    def __init__(
        self,
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        retry: RetryPolicy,
        max_queue_size: int = 10_000,
        max_in_flight: int = 128,
        shutdown_timeout: float = 3.0,
        flush_at_exit: bool = True,
        http: Callable[[], HttpPoster],
        clock: Clock = SYSTEM_CLOCK,
        threads: bool = True,
    ) -> None:
        """*threads* False: no worker thread is ever started; an event loop delivers instead,
        through :meth:`take_ready` and :meth:`finish` (and *http* is not used)."""
        self._endpoint = endpoint
        self._clock = clock
        self._settlement = settlement
        self._retry = retry
        self._max_queue_size = max_queue_size
        self._max_in_flight = max_in_flight
        self._new_http = http
        self._uses_threads = threads
        self.shutdown_timeout = shutdown_timeout
        self._deaths = 0
        self._reset_state()
        register_for_process_events(self, close_at_exit=flush_at_exit)
        count_live(self, max_in_flight)

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._retries: list[_Item] = []
        self._pending = 0
        self._queued = {"goal": 0, "payment": 0}  # by kind
        self._next_seq = 1
        self._lowest_unsettled = 1
        self._settled_above_lowest: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._idle_workers = 0
        self._flush_waiters = 0
        self._in_flight = 0
        self._limit = InFlightLimit(self._max_in_flight)
        # This transport's own breaker: its lock guards the breaker and the queue together.
        self._breaker = new_breaker(
            self._retry, f"the API at {self._endpoint.url}", held=lambda: self._pending
        )
        self._closed = False
        self.undelivered_at_close = 0
        self._http: HttpPoster | None = None

    # -- the request path -------------------------------------------------------------------

    def submit(self, goal: Tracked) -> bool:
        if self._pid != os.getpid():  # forked without Python's fork hooks (uWSGI by default)
            self._after_fork_in_child()
        with self._lock:
            if self._closed:
                drop_reason = "the tracker is closed"
            elif self._pending >= self._max_queue_size:
                drop_reason = f"the queue is full ({self._max_queue_size} goals waiting)"
            else:
                drop_reason = ""
                self._queue.append(_Item(self._next_seq, goal, self._clock.monotonic()))
                self._next_seq += 1
                self._pending += 1
                self._queued[goal.kind] += 1  # counted here, under the lock already held
                # While the API is down the idle workers sleep until the next probe is due:
                # waking one per goal would only steal the GIL from the request.
                if self._idle_workers and self._breaker.would_admit(self._clock.monotonic()):
                    self._cond.notify()
            start_workers = self._uses_threads and not self._threads and not drop_reason
        if drop_reason:
            self._settlement.dropped(goal, drop_reason)
            return False
        if start_workers:
            self._start_workers()
        return True

    @property
    def stats(self) -> Stats:
        return self._settlement.snapshot(pending=self._pending, queued=dict(self._queued))

    def queued(self, kind: str) -> int:
        """Items of *kind* this transport accepted (what its ``stats`` adds to the counts)."""
        return self._queued[kind]

    # -- flush and close ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        if flush_would_deadlock(self):
            return False
        # Timeouts are the caller's real seconds, whatever clock the schedules read.
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._next_seq - 1
            if self._lowest_unsettled > target:
                return True
            workers_alive = not self._uses_threads or any(t.is_alive() for t in self._threads)
        if not workers_alive:
            self._deliver_inline(target, deadline)
        with self._cond:
            self._flush_waiters += 1
            try:
                while self._lowest_unsettled <= target:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flush_waiters -= 1

    def close(self, timeout: float | None = None) -> bool:
        return self._close(timeout, at_exit=False)

    def _close(self, timeout: float | None, *, at_exit: bool) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self.undelivered_at_close = self._pending  # queued, waiting to retry, or in flight
            leftovers = [*self._queue, *self._retries]
            self._queue.clear()
            self._retries.clear()
            self._cond.notify_all()
            threads = list(self._threads)
        forget_live(self)
        for item in leftovers:
            self._settlement.dropped(
                item.goal, "the tracker closed before it was delivered", log=not at_exit
            )
            self._mark_settled(item)
        for thread in threads:
            if thread is not threading.current_thread() and thread.ident is not None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        http, self._http = self._http, None
        if http is not None:
            http.close()
        forget_at_exit(self)
        self._settlement.flush_summaries()  # a closed tracker's counts are said now, not later
        return flushed and not leftovers

    # -- workers ------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        # Only one thread is started here, in the caller's request: it builds the connection
        # pool (TLS set-up takes milliseconds) and starts the other workers itself.
        with self._lock:
            if self._threads or self._closed:
                return
            if sys.is_finalizing() or exiting():
                return  # the exit flush delivers inline: no new thread at shutdown
            first = threading.Thread(
                target=self._supervised,
                args=(self._boot_and_work,),
                name="goaltrack-worker-0",
                daemon=True,
            )
            self._threads.append(first)  # claimed: a concurrent submit starts no other
        if not start_thread(first):  # interpreter shutting down
            with self._lock:
                self._threads.remove(first)

    def _boot_and_work(self) -> None:
        warn_if_threads_cannot_run()
        try:
            http: HttpPoster | None = self._new_http()
        except Exception:  # e.g. a user's http_client factory failing: retried at each attempt
            logger.exception("goaltrack: making the HTTP client failed")
            http = None
        with self._lock:
            self._http = http
        with self._lock:
            wanted = self._limit.limit
        for _ in range(1, wanted):
            if not self._add_worker():  # interpreter shutting down: deliver with fewer workers
                break
        self._work()

    def _add_worker(self) -> bool:
        """Start one more worker (for a grown in-flight limit); False if none can start."""
        with self._lock:
            if self._closed or sys.is_finalizing() or exiting():
                return False
            thread = threading.Thread(
                target=self._supervised,
                args=(self._work,),
                name=f"goaltrack-worker-{len(self._threads)}",
                daemon=True,
            )
            self._threads.append(thread)
        if start_thread(thread):
            return True
        with self._lock:
            self._threads.remove(thread)
        return False

    def _supervised(self, run: Callable[[], None]) -> None:
        """Run a worker; if it dies, say so (with the traceback) and start a replacement."""
        mark_delivery_thread()
        try:
            run()
            return
        except (Exception, SystemExit):
            self._deaths += 1
            logger.exception(
                "goaltrack: delivery thread %s died (a bug in goaltrack; please report it); "
                "starting a replacement, no goal is lost",
                threading.current_thread().name,
            )
        with self._lock:
            me = threading.current_thread()
            if me in self._threads:
                self._threads.remove(me)
            if self._closed or sys.is_finalizing() or exiting():
                return
            replacement = threading.Thread(
                target=self._supervised,
                args=(self._work,),
                name=f"goaltrack-worker-r{self._deaths}",
                daemon=True,
            )
            self._threads.append(replacement)
        if not start_thread(replacement):
            with self._lock:
                self._threads.remove(replacement)

    def _work(self) -> None:
        while True:
            item = self._take(block=True, deadline=None)
            if item is None:
                return
            try:
                self._attempt(item)
            except BaseException:
                self._hold_again(item)
                raise

    def _hold_again(self, item: _Item) -> None:
        """*item*'s attempt ended in an error of ours: unless it was settled or is waiting, it
        waits again."""
        with self._cond:
            settled = item.seq < self._lowest_unsettled or item.seq in self._settled_above_lowest
            if settled or self._closed or any(w is item for w in self._retries):
                return
            item.due = self._clock.monotonic() + 1.0
            heapq.heappush(self._retries, item)

    def _take(self, *, block: bool, deadline: float | None) -> _Item | None:
        """The next goal to attempt, once the breaker admits it: a due retry, else the oldest."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = self._clock.monotonic()
                item, wake_at = self._ready(now)
                if item is not None:
                    return item
                if not block:
                    return None
                wait_until = wake_at
                if deadline is not None:  # real seconds (see flush), unlike now and wake_at
                    left = deadline - time.monotonic()
                    if left <= 0 or (wake_at is not None and wake_at - now > left):
                        return None  # nothing can be attempted before the deadline
                    wait_until = now + left if wake_at is None else wake_at
                self._idle_workers += 1
                try:
                    # Bounded: whatever a due time says, a wait can neither overflow nor last.
                    self._cond.wait(None if wait_until is None else min(wait_until - now, 60.0))
                finally:
                    self._idle_workers -= 1

    def _retry_due(self, now: float) -> bool:
        return bool(self._retries) and self._retries[0].due <= now

    def _ready(self, now: float) -> tuple[_Item | None, float | None]:
        """The next goal the limit and the breaker admit now, counted in flight; else None and
        when one may be (None: at the next submit or settlement). The caller holds the lock."""
        retry_due = self._retry_due(now)
        if not self._limit.admits(self._in_flight):
            # Every slot is busy: a request finishing takes the next goal.
            return None, None
        if retry_due or self._queue:
            ticket = self._breaker.admit(now)
            if ticket is not None or self._breaker.refusal_expired(now):
                # Past refusal_give_up, the goals no probe takes fail without a request
                # (ticket None: the attempt settles them as failed).
                item = heapq.heappop(self._retries) if retry_due else self._queue.popleft()
                item.ticket = ticket
                self._in_flight += 1
                return item, None
            return None, self._breaker.wake_at
        wake_at = self._retries[0].due if self._retries else None
        probe_at = self._breaker.wake_at
        if probe_at is not None and probe_at > now:
            # Nothing to send now; a goal submitted before the next probe is due
            # wakes nobody (see submit), so be awake when it is.
            wake_at = probe_at if wake_at is None else min(wake_at, probe_at)
        return None, wake_at

    # -- driven by an event loop (threads=False) -----------------------------------------------

    def take_ready(self) -> _Item | float | None:
        """Without waiting: the next goal to attempt now (counted in flight until
        :meth:`finish`), else the seconds until one may be ready, else None (one may be after
        the next :meth:`submit` or :meth:`finish`). Nothing once closed."""
        with self._lock:
            if self._closed:
                return None
            now = self._clock.monotonic()
            item, wake_at = self._ready(now)
            if item is not None:
                return item
            return None if wake_at is None else max(0.0, wake_at - now)

    def finish(self, item: _Item, result: DeliveryResult | None) -> None:
        """*item*'s attempt gave *result* (None: it was not sent, its ticket being None). If
        settling it raises (a bug, or a hook calling ``sys.exit()``), it waits again first."""
        try:
            self._settle(item, result)
        except BaseException:
            self._hold_again(item)
            raise
        finally:
            with self._cond:
                self._in_flight -= 1

    def all_settled(self) -> bool:
        """Every goal submitted so far is settled."""
        with self._lock:
            return self._lowest_unsettled >= self._next_seq

    def _attempt(self, item: _Item, deadline: float | None = None) -> None:
        if item.ticket is None:  # held by a refused key for longer than refusal_give_up
            self.finish(item, None)
            return
        http = self._http
        try:
            if http is None:
                http = self._http = self._new_http()
            result = deliver(item.goal, self._endpoint, http, deadline=deadline)
        except Exception as exc:  # a bug of ours must not kill the worker or the next goal
            logger.exception("goaltrack: unexpected error delivering %s", item.goal.label)
            result = DeliveryResult(Outcome.RETRY, f"unexpected error: {type(exc).__name__}")
        self.finish(item, result)

    def _settle(self, item: _Item, result: DeliveryResult | None) -> None:
        with self._cond:
            now = self._clock.monotonic()
            verdict = judge(
                self._breaker,
                self._retry,
                item.state,
                item.ticket,
                result,
                now=now,
                age=now - item.created,
            )
            item.state = verdict.state
            if verdict.api_back:
                self._resume_after_outage()
            more_workers = self._adjust_limit(result, now)
            kept = verdict.retry_in is not None and not self._closed
            if kept:
                item.due = now + (verdict.retry_in or 0.0)
                heapq.heappush(self._retries, item)
                if self._breaker.would_admit(now):
                    self._cond.notify()
        if more_workers:
            self._add_worker()
        if kept:
            if result is not None:  # else it was not sent: the key's refusal ended meanwhile
                self._settlement.retrying(item.goal, result, verdict.retry_in or 0.0)
            return
        if verdict.retry_in is not None:
            self._settlement.dropped(item.goal, "the tracker closed before it was delivered")
        elif verdict.final is not None:
            self._settlement.failed(item.goal, verdict.final)
        else:
            assert result is not None
            self._settlement.delivered(
                item.goal, result, maybe_duplicate=item.state.may_have_arrived
            )
        self._mark_settled(item)

    def _adjust_limit(self, result: DeliveryResult | None, now: float) -> bool:
        """Grow or cut the in-flight limit after *result*; True when a worker must be added.
        The caller holds the lock."""
        if result is None:
            return False
        if result.outcome is Outcome.RETRY:
            self._limit.failed()
            return False
        if self._breaker.state is not BreakerState.CLOSED:
            return False
        waiting = bool(self._queue) or self._retry_due(now)
        if not self._limit.answered(waiting):
            return False
        if self._uses_threads and len(self._threads) < self._limit.limit:
            return True
        self._cond.notify()  # a worker the limit held back may go now
        return False

    def _resume_after_outage(self) -> None:
        """The API is back: goals held by the outage are due now, and every worker wakes."""
        now = self._clock.monotonic()
        for waiting in self._retries:
            if waiting.state.strike_mark is None:  # its last failure was the outage's, not its own
                waiting.due = now
        heapq.heapify(self._retries)
        self._cond.notify_all()

    def _mark_settled(self, item: _Item) -> None:
        with self._cond:
            self._pending -= 1
            self._settled_above_lowest.add(item.seq)
            while self._lowest_unsettled in self._settled_above_lowest:
                self._settled_above_lowest.discard(self._lowest_unsettled)
                self._lowest_unsettled += 1
            if self._flush_waiters:
                self._cond.notify_all()

    def _deliver_inline(self, target: int, deadline: float | None) -> None:
        """Deliver from the calling thread: for when no worker can run (interpreter exit)."""
        while True:
            with self._cond:
                if self._lowest_unsettled > target:
                    return
            item = self._take(block=True, deadline=deadline)
            if item is None:
                return
            self._attempt(item, deadline)

    # -- fork ---------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent's goals stay the parent's: the child starts empty, with its own workers
        # and connections. The parent's pool is abandoned, not closed: its sockets are shared.
        self._settlement = self._settlement.fresh()
        self._reset_state()

    def _close_at_exit(self) -> None:
        flushed = self._close(self.shutdown_timeout, at_exit=True)
        if not flushed:
            report_exit(
                self.stats,
                pending=0,
                lost=self.undelivered_at_close,
                timeout=self.shutdown_timeout,
            )

    def __repr__(self) -> str:
        return (
            f"<BackgroundTransport {self._endpoint!r} pending={self._pending} "
            f"workers={len(self._threads)} in_flight_limit={self._limit.limit}>"
        )
