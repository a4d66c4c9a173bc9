"""The web process's end of the courier: ``submit`` writes one line to a pipe, nothing more.

:class:`CourierTransport` is the default delivery of ``mode="background"`` where a separate
process can run (:func:`courier_unavailable`). Each web process starts its own courier
(:mod:`.child`) on its first goal, from a thread of its own, and hands it each goal as one
non-blocking ``os.write``; the courier delivers with the in-process machinery and sends back
what became of each goal, in batches. So the web process spends a few microseconds per goal and
no thread of it wakes per request sent: in ``bench/delivery.py`` it costs the web process a few
percent of the CPU per goal of delivering from its own threads.

What stays here, in the web process: the numbering of goals, the bound on goals outstanding
(``max_queue_size``), the counters, the log lines (the courier's are re-emitted through this
process's logging) and the hooks and signals, called from one reader thread with the goal
objects that were submitted. ``flush()`` waits for the settlements.

Failures have a floor, never a hole:

- the pipe is full (a courier behind): the bytes wait in memory, written by a pump thread;
- the courier dies: another is started and every goal not settled yet is sent to it again
  (counted as a possible duplicate if it is delivered: it may have been sent already);
- a courier cannot start, or dies again and again: the goals go to an in-process
  :class:`~goaltrack.transports.background.BackgroundTransport`, with one warning;
- the web process dies, even by SIGKILL: the courier sees its stdin end, delivers what it holds
  within ``shutdown_timeout`` and exits;
- a forked child (gunicorn ``--preload``) starts its own courier on its first goal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from goaltrack.delivery import Endpoint
from goaltrack.items import Tracked
from goaltrack.process import (
    count_live,
    flush_would_deadlock,
    forget_at_exit,
    forget_live,
    mark_delivery_thread,
    register_for_process_events,
    report_exit,
    start_thread,
    threads_are_greenlets,
)
from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.base import KINDS, Settlement, Stats
from goaltrack.transports.courier import wire

__all__ = ["CourierTransport"]

logger = logging.getLogger("goaltrack")

QUICK_DEATH = 10.0
"""A courier that exits within this many seconds of its start counts towards giving up."""
QUICK_DEATHS_TO_GIVE_UP = 3
"""After this many quick deaths in a row the goals are delivered from this process instead."""

_CLOSED = "the tracker closed before it was delivered"


class CourierTransport:
    """Hand goals to a courier process; see the module docstring for the guarantees."""

    def __init__(
        self,
        endpoint: Endpoint,
        settlement: Settlement,
        *,
        config: wire.CourierConfig,
        flush_at_exit: bool = True,
        fallback: Callable[[], BackgroundTransport],
    ) -> None:
        self._endpoint = endpoint
        self._settlement = settlement
        self._config = config
        self._make_fallback = fallback
        self.shutdown_timeout = config.shutdown_timeout
        self._reset_state()
        register_for_process_events(self, close_at_exit=flush_at_exit)
        count_live(self, 2)

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._outstanding: dict[int, Tracked] = {}  # seq order: only ever deleted from
        self._maybe_sent: set[int] = set()  # handed to a courier that died
        self._next_seq = 1
        self._queued = {"goal": 0, "payment": 0}  # by kind
        self._unsent = bytearray()  # for the pump: the pipe was full, or no courier yet
        self._pumping = False
        self._need_courier = True
        self._courier: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None  # the courier's stdin, non-blocking
        self._fds: set[int] = set()  # this process's open ends of the couriers' pipes
        self._started = False
        self._pump_thread: threading.Thread | None = None
        self._reader_thread: threading.Thread | None = None
        self._couriers_started = 0
        self._quick_deaths = 0
        self._closing = False
        self._closed = False
        self._fallback: BackgroundTransport | None = None
        self.undelivered_at_close = 0

    # -- the request path ---------------------------------------------------------------------

    def submit(self, goal: Tracked) -> bool:
        if self._pid != os.getpid():  # forked without Python's fork hooks (uWSGI by default)
            self._after_fork_in_child()
        fallback = self._fallback
        if fallback is not None:
            return fallback.submit(goal)
        with self._lock:
            if self._closed:
                drop_reason = "the tracker is closed"
            elif len(self._outstanding) >= self._config.max_queue_size:
                drop_reason = f"the queue is full ({self._config.max_queue_size} goals waiting)"
            else:
                drop_reason = ""
                seq = self._next_seq
                self._next_seq += 1
                self._outstanding[seq] = goal
                self._queued[goal.kind] += 1
                self._send(wire.item_line(seq, goal))
            start = not self._started and not drop_reason
            self._started = True
        if drop_reason:
            self._settlement.dropped(goal, drop_reason)
            return False
        if start:
            self._start_pump()
        return True

    def _send(self, data: bytes) -> None:
        """Write *data* to the courier now if the pipe takes it, else leave it to the pump.
        Called with the lock held, which keeps lines whole and in order."""
        if self._fd is not None and not self._unsent and not self._pumping:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            except OSError:  # the courier is gone: its reader starts another, which gets it all
                return
            if written == len(data):
                return
            data = data[written:]
        self._unsent += data
        self._cond.notify_all()

    @property
    def stats(self) -> Stats:
        fallback = self._fallback
        if fallback is not None:
            return self._settlement.snapshot(
                pending=fallback.stats.pending,
                queued={kind: self._queued[kind] + fallback.queued(kind) for kind in KINDS},
            )
        return self._settlement.snapshot(pending=len(self._outstanding), queued=dict(self._queued))

    # -- flush and close ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        if flush_would_deadlock(self):
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._next_seq - 1
            while self._fallback is None and self._outstanding:
                if next(iter(self._outstanding)) > target:
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            fallback = self._fallback
        if fallback is None:
            return True
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return fallback.flush(remaining)

    def close(self, timeout: float | None = None) -> bool:
        return self._close(timeout, at_exit=False)

    def _close(self, timeout: float | None, *, at_exit: bool) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._closing = True
            self._cond.notify_all()
            threads = [t for t in (self._pump_thread, self._reader_thread) if t is not None]
            fallback = self._fallback
        # The pump ends the courier's stdin; the courier then delivers what it can within its
        # shutdown_timeout, reports and exits, which ends the reader.
        for thread in threads:
            if thread is not threading.current_thread():
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        with self._cond:
            leftovers = list(self._outstanding.values())
            self._outstanding.clear()
            self._cond.notify_all()
        forget_live(self)
        forget_at_exit(self)
        for goal in leftovers:
            self._settlement.dropped(goal, _CLOSED, log=not at_exit)
        self.undelivered_at_close = len(leftovers)
        if fallback is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            forget_at_exit(fallback)
            flushed = fallback._close(remaining, at_exit=at_exit) and flushed
            self.undelivered_at_close += fallback.undelivered_at_close
        self._settlement.flush_summaries()
        return flushed and not leftovers

    def _close_at_exit(self) -> None:
        flushed = self._close(self.shutdown_timeout, at_exit=True)
        if not flushed:
            report_exit(
                self.stats,
                pending=0,
                lost=self.undelivered_at_close,
                timeout=self.shutdown_timeout,
            )

    # -- the pump: starts couriers and writes what the pipe did not take ----------------------

    def _start_pump(self) -> None:
        if threads_are_greenlets():
            # Patched after the tracker was made (gunicorn -k gevent --preload): a blocking
            # read of the courier's pipe would stall the whole hub.
            self._give_up_on_couriers("gevent has patched threading", level=logging.INFO)
            return
        pump = threading.Thread(target=self._pump, name="goaltrack-courier-pump", daemon=True)
        with self._lock:
            self._pump_thread = pump
        if not start_thread(pump):  # interpreter exit, uWSGI's master: no thread here
            self._give_up_on_couriers("no thread can start in this process now")

    def _pump(self) -> None:
        while True:
            with self._cond:
                while not (self._need_courier or self._unsent or self._closing):
                    self._cond.wait()
                if self._fallback is not None:
                    return
                start_courier = self._need_courier
                if start_courier:
                    self._need_courier = False
                    if self._couriers_started:  # a courier died: the next gets all unsettled
                        self._maybe_sent.update(self._outstanding)
                        self._unsent = bytearray(
                            b"".join(wire.item_line(s, g) for s, g in self._outstanding.items())
                        )
                data = bytes(self._unsent)
                self._unsent.clear()
                self._pumping = True
                closing = self._closing
            if start_courier and not self._start_courier():
                return
            if data:
                self._write_all(data)
            with self._cond:
                self._pumping = bool(self._unsent)
                if closing and not (self._unsent or self._need_courier):
                    self._end_courier_input()
                    return

    def _start_courier(self) -> bool:
        """Start a courier and tell it its configuration; False when none could start."""
        # The courier imports this very goaltrack, wherever the app found it.
        package_root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # Plain pipes, never file objects: a fork while a thread of ours used one would leave
        # the child a lock it could never take to close its copy.
        from_web, to_courier = os.pipe()  # (read end, write end)
        to_web, from_courier = os.pipe()
        try:
            courier = subprocess.Popen(
                [sys.executable, "-m", "goaltrack.transports.courier"],
                stdin=from_web,
                stdout=from_courier,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal is the web process's to handle
            )
        except OSError as exc:
            for fd in (to_courier, to_web):
                os.close(fd)
            self._give_up_on_couriers(f"starting {sys.executable} failed: {exc}")
            return False
        finally:
            os.close(from_web)
            os.close(from_courier)
        started = time.monotonic()
        self._write_all(wire.hello(self._config), fd=to_courier)
        os.set_blocking(to_courier, False)
        reader = threading.Thread(
            target=self._read,
            args=(courier, to_web, started),
            name="goaltrack-courier-reader",
            daemon=True,
        )
        with self._cond:
            old_fd = self._fd
            self._courier = courier
            self._fd = to_courier
            self._fds.update((to_courier, to_web))
            self._couriers_started += 1
            self._reader_thread = reader
        if old_fd is not None:
            self._close_fd(old_fd)
        if not start_thread(reader):
            self._give_up_on_couriers("no thread can start in this process now")
            return False
        return True

    def _write_all(self, data: bytes, *, fd: int | None = None) -> None:
        """Write all of *data* (waiting for the pipe), unless the courier is gone."""
        target = self._fd if fd is None else fd
        view = memoryview(data)
        while view and target is not None:
            try:
                view = view[os.write(target, view) :]
            except BlockingIOError:
                select.select([], [target], [], 1.0)
            except OSError:
                return  # the courier is gone: its reader starts another, which gets it all

    def _end_courier_input(self) -> None:
        """End the courier's stdin (lock held): it delivers what it holds, reports and exits."""
        fd, self._courier, self._fd = self._fd, None, None
        if fd is not None:
            self._fds.discard(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._cond.notify_all()

    def _close_fd(self, fd: int) -> None:
        """Close one of our pipe ends (not under the lock), forgetting it first: a fork must
        not close a number that has since been reused."""
        with self._lock:
            self._fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- the reader: settlements and log lines from the courier -------------------------------

    def _read(self, courier: subprocess.Popen[bytes], fd: int, started: float) -> None:
        mark_delivery_thread()  # the hooks run here: a flush() from one must not wait for it
        partial = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                self._receive(line)
        self._close_fd(fd)
        code = courier.wait()
        with self._cond:
            if courier is not self._courier and self._courier is not None:
                return  # replaced already
            if self._closing and courier is not self._courier:
                return  # its stdin was ended by close(): this is its normal exit
            self._fd = None
            quick = time.monotonic() - started < QUICK_DEATH
            self._quick_deaths = self._quick_deaths + 1 if quick else 0
            give_up = self._quick_deaths >= QUICK_DEATHS_TO_GIVE_UP
            if not give_up:
                self._need_courier = True
                self._cond.notify_all()
            unsettled = len(self._outstanding)
        if give_up:
            self._give_up_on_couriers(
                f"it exited {self._quick_deaths} times in a row soon after starting (code {code})"
            )
            return
        logger.warning(
            "goaltrack: the delivery process exited unexpectedly (code %s); starting another, "
            "which is given the %d goal(s) not settled yet",
            code,
            unsettled,
        )

    def _receive(self, line: bytes) -> None:
        try:
            message = wire.decode(line)
            if message[0] == "s":
                self._settle(message[1])
            elif message[0] == "l":
                _, level, name, text = message
                logging.getLogger(name).log(level, "%s", text)
        except Exception:
            logger.exception("goaltrack: a message from the delivery process was not read")

    def _settle(self, events: list[list[Any]]) -> None:
        settlement = self._settlement
        for event in events:
            kind, seq = event[0], event[1]
            assert isinstance(seq, int)
            goal = self._outstanding.get(seq)
            if goal is None:
                continue
            if kind == "y":
                result = wire.result_from_list(event[2])
                settlement.retrying(goal, result, float(event[3]))
                continue
            if kind == "d":
                maybe_sent = seq in self._maybe_sent
                result = wire.result_from_list(event[2])
                settlement.delivered(goal, result, maybe_duplicate=bool(event[3]) or maybe_sent)
            elif kind == "x":
                settlement.failed(goal, wire.result_from_list(event[2]))
            elif kind == "o":
                settlement.dropped(goal, str(event[2]))
            with self._cond:
                self._outstanding.pop(seq, None)
                self._maybe_sent.discard(seq)
        with self._cond:
            self._cond.notify_all()

    # -- when no courier can run ----------------------------------------------------------------

    def _give_up_on_couriers(self, why: str, *, level: int = logging.WARNING) -> None:
        """Deliver from this process's threads from now on, starting with the goals outstanding."""
        with self._cond:
            if self._fallback is not None:
                return
            fallback = self._make_fallback()
            moved = list(self._outstanding.values())
            self._outstanding.clear()
            self._maybe_sent.clear()
            self._unsent.clear()
            # Handed over before anyone can see the fallback: a flush() waiting here then waits
            # for these goals too. The fallback counts them as queued from now on.
            for item in moved:
                self._queued[item.kind] -= 1
                fallback.submit(item)
            self._fallback = fallback
            self._cond.notify_all()
        forget_at_exit(self)
        logger.log(
            level,
            "goaltrack: no delivery process (%s); delivering from this process's threads",
            why,
        )

    # -- fork ---------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent's courier and goals stay the parent's: close our copies of its pipes.
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._settlement = self._settlement.fresh()
        self._reset_state()

    def __repr__(self) -> str:
        courier = self._courier
        return (
            f"<CourierTransport {self._endpoint!r} pending={len(self._outstanding)} "
            f"courier={courier.pid if courier is not None else None}>"
        )
