"""Process concerns, in one place: fork, interpreter exit, SIGTERM, goaltrack's threads, and the
servers that change their rules (gevent, uWSGI).

- **Fork.** Every goaltrack module registers its fork hooks with :func:`at_fork` (the HTTP
  client's watchdog, the outbox's connections); values kept once per process (Celery's clients,
  the breakers shared by a process's deliveries) are a :class:`PerProcess`, which forgets them
  in a forked child.
  Transports that own threads or connections call :func:`register_for_process_events`: after a
  fork the child calls their ``_after_fork_in_child()`` (fresh locks, an empty queue, its own
  workers; the parent's goals stay the parent's).
- **Interpreter exit.** Registered transports' ``_close_at_exit()`` runs from :mod:`atexit`
  (flush within ``shutdown_timeout``); :func:`forget_at_exit` for one closed already.
  :func:`exiting` is True from then on (no thread may start), and :func:`report_exit` is the one
  wording of the exit report, whatever the transport.
- **SIGTERM.** Python's default action ends the process at once, with no atexit, so a bare
  script, management command or worker stopped that way would lose every goal still in memory
  without a word. Where SIGTERM still has that default (servers such as gunicorn, uvicorn and
  Celery install their own handler and exit through atexit; so may the application: its handler
  is left alone), a handler is installed that runs the exit flush (bounded by
  ``shutdown_timeout``, logging what it could not deliver) and then ends the process by SIGTERM
  as before.
- **Threads.** :func:`start_thread` (never under a lock: gevent), :func:`mark_delivery_thread` /
  :func:`in_delivery_thread` (a hook's ``flush()`` must not wait for its own thread).
- **Servers and misuse.** :func:`threads_are_greenlets` (gevent), :func:`in_uwsgi_master` (no
  thread there: uWSGI forks from C), :func:`warn_if_threads_cannot_run` (uWSGI without threads,
  gevent without patched sockets) and :func:`count_live` (too many live trackers: one made per
  request).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from goaltrack.transports.base import Stats

__all__ = [
    "MANY_TRACKERS",
    "PerProcess",
    "at_fork",
    "count_live",
    "exiting",
    "flush_would_deadlock",
    "forget_at_exit",
    "in_delivery_thread",
    "in_uwsgi_master",
    "mark_delivery_thread",
    "register_for_process_events",
    "report_exit",
    "start_thread",
    "threads_are_greenlets",
    "warn_if_threads_cannot_run",
]

logger = logging.getLogger("goaltrack")

# -- fork ----------------------------------------------------------------------------------------


def at_fork(
    *,
    before: Callable[[], object] | None = None,
    after_in_parent: Callable[[], object] | None = None,
    after_in_child: Callable[[], object] | None = None,
) -> None:
    """Register fork hooks (:func:`os.register_at_fork`, at once, in the order called): the one
    way goaltrack's modules do, so that what a fork resets is all found from here."""
    hooks = {
        name: hook
        for name, hook in (
            ("before", before),
            ("after_in_parent", after_in_parent),
            ("after_in_child", after_in_child),
        )
        if hook is not None
    }
    os.register_at_fork(**hooks)


K = TypeVar("K")
V = TypeVar("V")


class PerProcess(Generic[K, V]):
    """Values made on first use, one per key and process: a forked child starts with none, and
    with a fresh lock (the parent's may have been held at the fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[K, V] = {}
        at_fork(after_in_child=self._forget)

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value for *key*, made now by *make* (under the lock) if this process has none."""
        with self._lock:
            value = self._values.get(key)
            if value is None:
                value = self._values[key] = make()
            return value

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._values.clear()


# Transports register here, once per process: after a fork the child calls their
# ``_after_fork_in_child()``; at interpreter exit (or SIGTERM) their ``_close_at_exit()``.
_reset_after_fork: weakref.WeakSet[Any] = weakref.WeakSet()
_close_at_exit: weakref.WeakSet[Any] = weakref.WeakSet()
_exiting = False


def register_for_process_events(transport: Any, *, close_at_exit: bool) -> None:
    """*transport* is reset in a forked child, and (*close_at_exit*) closed at interpreter exit
    or SIGTERM (within its ``shutdown_timeout``)."""
    _reset_after_fork.add(transport)
    if close_at_exit:
        _close_at_exit.add(transport)
        _flush_at_sigterm()


def forget_at_exit(transport: Any) -> None:
    """The transport was closed already: nothing to do for it at exit."""
    _close_at_exit.discard(transport)


def _after_fork_in_child() -> None:
    for transport in list(_reset_after_fork):
        try:
            transport._after_fork_in_child()
        except Exception:
            logger.exception("goaltrack: resetting %r after fork failed", transport)


# -- interpreter exit ----------------------------------------------------------------------------


def exiting() -> bool:
    """True once the interpreter's exit has begun: no new thread may be started then."""
    return _exiting


def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    for transport in list(_close_at_exit):
        try:
            transport._close_at_exit()
        except Exception:
            logger.exception("goaltrack: closing %r at exit failed", transport)


def report_exit(
    stats: Stats,
    *,
    pending: int,
    lost: int,
    timeout: float | None,
    outbox: str | None = None,
) -> None:
    """The one exit report of every transport: delivered, still pending, lost, and the advice.

    Logged at WARNING when a goal is pending or lost, at INFO otherwise.
    """
    within = "" if timeout is None else f" within {timeout:g} s"
    if outbox is not None:
        advice = f"; pending goals stay in the outbox {outbox} for the next start"
    elif lost:
        advice = "; use the outbox (GOALTRACK_OUTBOX) to lose none"
    else:
        advice = ""
    logger.log(
        logging.WARNING if pending or lost else logging.INFO,
        "goaltrack at exit: %d delivered, %d still pending, %d lost (not delivered%s)%s",
        stats.delivered,
        pending,
        lost,
        within,
        advice,
    )


# -- SIGTERM -------------------------------------------------------------------------------------

_sigterm_handled = False


def _flush_at_sigterm() -> None:
    global _sigterm_handled
    if _sigterm_handled or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the application (or its server) handles SIGTERM itself
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    _sigterm_handled = True


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if threads_are_greenlets():
        # Under gevent this handler runs in whichever greenlet was interrupted (one delivering a
        # goal, or the hub, which must not block): waiting here would hold that goal back for
        # the whole timeout, or fail. The flush gets a greenlet of its own.
        import gevent

        gevent.spawn(_flush_then_terminate)
        return
    _flush_then_terminate()


def _flush_then_terminate() -> None:
    # The flush runs in a thread: this handler interrupts the main thread anywhere, possibly
    # inside a transport's lock, which the flush would then wait for forever.
    timeout = max((t.shutdown_timeout for t in list(_close_at_exit)), default=0.0)
    closer = threading.Thread(target=_close_all_at_exit, name="goaltrack-sigterm", daemon=True)
    closer.start()
    closer.join(timeout + 1.0)
    if closer.is_alive():
        logger.warning(
            "goaltrack at exit: SIGTERM: could not flush within %g s; goals still in memory are "
            "lost; use the outbox (GOALTRACK_OUTBOX) to lose none",
            timeout,
        )
    os.kill(os.getpid(), signal.SIGTERM)


# -- goaltrack's threads -------------------------------------------------------------------------


def start_thread(thread: threading.Thread) -> bool:
    """Start *thread* (never while holding a lock: under gevent, ``start()`` switches to the
    new greenlet, which takes the transport's lock at once; a lock made before gevent's
    monkey-patching, as in a gunicorn ``--preload`` master, would then block the process)."""
    if in_uwsgi_master():
        _say_no_thread_in_uwsgi_master()
        return False
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down
        return False
    return True


def in_uwsgi_master() -> bool:
    """True in uWSGI's master process (where it loads the app unless ``--lazy-apps``).

    uWSGI forks its workers (and respawns them, at any time) from C without taking the GIL: a
    worker forked while one of the master's threads held the GIL waits for it forever (seen in 2
    of 40 starts of an app that delivered a goal while it loaded). So goaltrack starts no thread
    there: :func:`start_thread` refuses, and the goals tracked in the master are delivered in the
    calling thread by ``flush()``, or at exit.
    """
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return False
    if getattr(uwsgi, "mule_id", lambda: 0)() or getattr(uwsgi, "i_am_the_spooler", lambda: 0)():
        return False  # uWSGI forks nothing from a mule or the spooler
    return bool(getattr(uwsgi, "worker_id", lambda: 1)() == 0)


_said_uwsgi_master = False


def _say_no_thread_in_uwsgi_master() -> None:
    global _said_uwsgi_master
    if _said_uwsgi_master:
        return
    _said_uwsgi_master = True
    if _uwsgi_master_forks_without_python_hooks():
        logger.warning(
            "goaltrack: tracking in uWSGI's master while it loads the app: it forks its workers "
            "without Python's fork hooks; start uWSGI with --py-call-osafterfork (or "
            "--lazy-apps). Goals tracked here are delivered by flush() or at exit, with no thread"
        )
    else:
        logger.info(
            "goaltrack: tracking in uWSGI's master: no delivery thread here (a worker forked "
            "while one of the master's threads holds the GIL would hang); goals tracked here "
            "are delivered by flush() or at exit, the workers deliver their own"
        )


# The thread objects, not a threading.local: a local made before gevent's monkey-patching (a
# gunicorn --preload master) is shared by every greenlet of the worker's one OS thread.
_delivery_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def mark_delivery_thread() -> None:
    """Called by a transport's worker thread when it starts: hooks run in it."""
    _delivery_threads.add(threading.current_thread())


def in_delivery_thread() -> bool:
    """True in a goaltrack worker thread (an ``on_delivery`` / ``on_failure`` hook runs there):
    a ``flush()`` from there would wait for the thread itself."""
    return threading.current_thread() in _delivery_threads


_warned_flush_in_hook: weakref.WeakSet[Any] = weakref.WeakSet()


def flush_would_deadlock(transport: Any) -> bool:
    """True when *transport*'s ``flush()`` is called from a delivery thread (a hook), where
    waiting would wait for that very thread: it returns False at once, and the first time for
    this transport one WARNING says so."""
    if not in_delivery_thread():
        return False
    if transport not in _warned_flush_in_hook:
        _warned_flush_in_hook.add(transport)
        logger.warning(
            "goaltrack: flush() was called from a delivery thread (an on_delivery, on_failure "
            "or on_drop hook); it returns False at once, as waiting there would deadlock: flush "
            "from your own code instead"
        )
    return True


# -- servers, and trackers made per request ------------------------------------------------------


def threads_are_greenlets() -> bool:
    """True when gevent has monkey-patched ``threading``: goaltrack's threads are greenlets."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


#: More live trackers than this in one process is almost always a tracker made per request.
MANY_TRACKERS = 8
_live: weakref.WeakSet[Any] = weakref.WeakSet()
_warned_many = False


def count_live(transport: Any, threads: int) -> None:
    """Count a transport with up to *threads* delivery threads until :func:`forget_live`; warn
    once when more than :data:`MANY_TRACKERS` are alive."""
    global _warned_many
    _live.add(transport)
    if len(_live) > MANY_TRACKERS and not _warned_many:
        _warned_many = True
        logger.warning(
            "goaltrack: %d trackers are alive in this process, each with up to %d delivery "
            "threads and its own connections: make one tracker and reuse it (goaltrack."
            "configure() / get_tracker(), or your framework's integration), or close() the ones "
            "you are done with",
            len(_live),
            threads,
        )


def forget_live(transport: Any) -> None:
    """The transport was closed: it no longer counts as live."""
    _live.discard(transport)


_warned_environment = False


def warn_if_threads_cannot_run() -> None:
    """Once per process, when the first delivery thread starts: warn about a server where
    goaltrack's threads would never deliver, or would block every request while they do."""
    global _warned_environment
    if _warned_environment:
        return
    _warned_environment = True
    if _uwsgi_without_threads():
        logger.warning(
            "goaltrack: uWSGI runs without threads, so goals queue up and are never delivered; "
            "start uWSGI with --enable-threads (or use mode='sync')"
        )
    # Greenlet workers deliver well on gevent's cooperative sockets; on blocking ones each
    # delivery would stop every greenlet of the process until the API answers.
    monkey = sys.modules.get("gevent.monkey")
    if threads_are_greenlets() and monkey is not None and not monkey.is_module_patched("socket"):
        logger.warning(
            "goaltrack: threading is gevent-patched but socket is not, so each delivery blocks "
            "every greenlet until the API answers; use gevent.monkey.patch_all()"
        )


def _uwsgi_master_forks_without_python_hooks() -> bool:
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or getattr(uwsgi, "worker_id", lambda: 1)() != 0:
        return False  # not under uWSGI, or in a worker already
    options = getattr(uwsgi, "opt", {})
    return not any(options.get(name) for name in ("py-call-osafterfork", "lazy-apps", "lazy"))


def _uwsgi_without_threads() -> bool:
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None:
        return False
    # uWSGI says whether it runs with threads (2.0.31 always does, with or without
    # --enable-threads; --threads N implies it); its options are the fallback.
    has_threads = getattr(uwsgi, "has_threads", None)
    if has_threads is not None:
        return not has_threads
    options = getattr(uwsgi, "opt", {})
    return not (options.get("enable-threads") or options.get("threads"))


at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
