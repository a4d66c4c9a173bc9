"""One installed adapter: its tracker, its request options, its signals, the flush at the end of
a request.

An adapter (Django's, Flask's, ASGI's) connects its framework to the core in these places:

- :class:`Adapter` here: where its tracker is, ``skip_bots``, ``flush_at_request_end``, its four
  signals (:mod:`goaltrack.hooks`), and where a goal waits for a commit (:meth:`Adapter.at_commit`,
  Django only);
- :mod:`goaltrack.context`: the request context (the current visitor, bound per request) and
  :class:`~goaltrack.context.RequestGoals`, subclassed to say what a request is;
- :mod:`goaltrack.bots`: the bot rule;
- :mod:`goaltrack.decorator`: goals asked for by a decorator or a signal connection;
- :mod:`goaltrack.startup`: building its tracker from configuration;
- :mod:`goaltrack.options`: every option an adapter reads, with one meaning, converted from
  strings alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from goaltrack.hooks import SignalSet
from goaltrack.tracker import GoalTracker, get_tracker

if TYPE_CHECKING:
    from goaltrack.context import RequestGoals

__all__ = [
    "Adapter",
]

logger = logging.getLogger("goaltrack")

#: Runs a callable once the current database transaction commits (Django's ``on_commit``).
AtCommit = Callable[[Callable[[], None]], object]


class Adapter:
    """One installed adapter: where its tracker is, its request options, and its signals.

    ``tracker`` is the adapter's own (a Flask app's, a middleware's) or, when it has none, the
    process-wide one, looked up on each use so that ``goaltrack.configure()`` may come later.
    """

    def __init__(
        self,
        signals: SignalSet,
        tracker: GoalTracker | None = None,
        *,
        skip_bots: bool = True,
        flush_at_request_end: float | None = None,
    ) -> None:
        self.signals = signals
        self._tracker = tracker
        self._skip_bots = skip_bots
        self._flush_at_request_end = flush_at_request_end

    @property
    def tracker(self) -> GoalTracker:
        return self._tracker or get_tracker()

    @property
    def skip_bots(self) -> bool:
        """Requests from known crawlers track nothing."""
        return self._skip_bots

    @property
    def flush_at_request_end(self) -> float | None:
        """Seconds a request that tracked goals waits for them at its end; None: no waiting."""
        return self._flush_at_request_end

    def at_commit(self, on_commit: bool | None) -> AtCommit | None:
        """Where a goal tracked with *on_commit* (None: the adapter's default) waits for the
        current transaction to commit before it is sent; None: it is sent at once. Only an
        adapter whose framework has transactions (Django's) defers."""
        return None

    def flush_after(self, goals: RequestGoals | None) -> None:
        """``flush_at_request_end``: wait for the goals of a request that tracked any."""
        timeout = self._flush_timeout(goals)
        if timeout is not None:
            _flush(self.tracker, timeout)

    async def aflush_after(self, goals: RequestGoals | None) -> None:
        """:meth:`flush_after` for async code: waits in a worker thread, not on the event loop."""
        timeout = self._flush_timeout(goals)
        if timeout is not None:
            await asyncio.to_thread(_flush, self.tracker, timeout)

    def _flush_timeout(self, goals: RequestGoals | None) -> float | None:
        return None if goals is None or not goals.tracked else self.flush_at_request_end


def _flush(tracker: GoalTracker, timeout: float) -> None:
    try:
        flushed = tracker.flush(timeout)
    except Exception:
        logger.exception("goaltrack: flushing goals at the end of a request failed")
        return
    if not flushed:
        logger.warning(
            "goaltrack: %d goal(s) still pending after %g s at the end of a request",
            tracker.stats.pending,
            timeout,
        )
