"""The outbox's fork gate: no thread of the process is inside SQLite when it forks.

SQLite keeps process-wide mutexes (its memory allocator's, its list of open files', ...) that a
thread holds while it is inside almost any SQLite call: connecting, running a statement, stepping
a cursor, closing. Were the process to fork then, the child would inherit such a mutex held by a
thread it does not have, and hang at its first connection.

So every SQLite call of the outbox (its store, its transport and the administration) runs
:func:`inside` the gate, and the outbox's fork hook (in
:mod:`~goaltrack.transports.outbox.transport`) closes the gate before the process forks: new
callers wait, and the fork waits (up to its bound) until no thread is inside. The parent reopens
the gate after the fork; the child starts with a new one (:func:`renew`).

Threads inside the gate do not exclude one another (one statement waiting for another process's
lock delays no other thread), and a thread inside may enter again. The garbage collector runs on
any thread at any time, outside the gate: so no connection of the outbox is left to it. Each is
closed explicitly; one whose owner was dropped unclosed is handed to :func:`close_later`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

__all__ = ["close", "close_later", "close_unclosed", "inherited", "inside", "renew", "reopen"]


class _Gate:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0  # threads inside (each counted once, however deep)
        self._closed = False
        self._depth = threading.local()

    @contextmanager
    def inside(self) -> Iterator[None]:
        depth: int = getattr(self._depth, "n", 0)
        if not depth:
            with self._cond:
                while self._closed:
                    self._cond.wait()
                self._inside += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if not depth:
                with self._cond:
                    self._inside -= 1
                    if self._closed and self._inside <= 1:
                        self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        """Let no thread in; wait up to *timeout* until none is inside (but the caller)."""
        own = 1 if getattr(self._depth, "n", 0) else 0
        with self._cond:
            self._closed = True
            return self._cond.wait_for(lambda: self._inside <= own, timeout)

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._cond.notify_all()


_gate = _Gate()
# Connections whose owner was dropped without closing them: (the process that opened it, it).
_unclosed: list[tuple[int, sqlite3.Connection]] = []
#: Connections a forked child inherited: kept referenced, never closed (closing one in the child
#: would act on the parent's file locks and journal); see ``_after_fork_in_child``.
inherited: list[sqlite3.Connection] = []


def inside() -> AbstractContextManager[None]:
    """Run SQLite calls in this: the process does not fork until they are done."""
    return _gate.inside()


def close(timeout: float) -> bool:
    """Before a fork: let no thread in; True once none is inside (False: *timeout* passed)."""
    return _gate.close(timeout)


def reopen() -> None:
    """After the fork, in the parent."""
    _gate.reopen()


def renew() -> None:
    """After the fork, in the child: a new gate, open; the parent's connections are kept."""
    global _gate
    _gate = _Gate()
    inherited.extend(conn for _, conn in _unclosed)
    _unclosed.clear()


def close_later(conn: sqlite3.Connection, opened_by: int) -> None:
    """*conn* lost its owner unclosed (a finalizer, on any thread): closed at the next
    :func:`close_unclosed`, inside the gate. No SQLite call, no lock: safe in a finalizer."""
    _unclosed.append((opened_by, conn))


def close_unclosed() -> None:
    """Close the connections handed to :func:`close_later` by this process. Inside the gate."""
    pid = os.getpid()
    while _unclosed:
        try:
            opened_by, conn = _unclosed.pop()
        except IndexError:  # another thread took the last one
            return
        if opened_by != pid:
            inherited.append(conn)
            continue
        with inside(), contextlib.suppress(sqlite3.Error):
            conn.close()
