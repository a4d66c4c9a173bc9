"""One installed adapter: its tracker, its request options, its signals, the flush at the end of
a request.

An adapter (Django's, Flask's, ASGI's) connects its framework to the core in these places:

- :class:`Adapter` here: where its tracker is, ``skip_bots``, ``flush_at_request_end`` (and the
  wait at a request's end a serverless platform asks for), its eight signals
  (:mod:`goaltrack.hooks`), and where a goal waits for a commit (:meth:`Adapter.at_commit`,
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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from goaltrack.hooks import SignalSet
from goaltrack.options import DEFAULT_FLUSH_TIMEOUT
from goaltrack.serverless import flush_before_freeze, flush_deadline, lambda_context_in
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

    def request_end_flush(self, tracker: GoalTracker) -> float | None:
        """Seconds a request that tracked goals waits for them at its end, None: no waiting.

        ``flush_at_request_end``; where *tracker* works for a serverless platform
        (:mod:`goaltrack.serverless`), that or :data:`~goaltrack.options.DEFAULT_FLUSH_TIMEOUT`.
        """
        configured = self.flush_at_request_end
        if configured is None and tracker.platform is not None:
            return DEFAULT_FLUSH_TIMEOUT
        return configured

    def flush_after(
        self, goals: RequestGoals | None, carrier: Mapping[str, Any] | None = None
    ) -> None:
        """Wait for the goals of a request that tracked any (:meth:`request_end_flush`), never
        past a Lambda invocation's time left (its context in *carrier*, the request's WSGI
        environ or ASGI scope)."""
        tracker = self.tracker
        timeout = self._flush_timeout(tracker, goals, carrier)
        if timeout is not None:
            flush_before_freeze(tracker, timeout, "a request")

    async def aflush_after(
        self, goals: RequestGoals | None, carrier: Mapping[str, Any] | None = None
    ) -> None:
        """:meth:`flush_after` for async code: waits in a worker thread, not on the event loop."""
        tracker = self.tracker
        timeout = self._flush_timeout(tracker, goals, carrier)
        if timeout is not None:
            await asyncio.to_thread(flush_before_freeze, tracker, timeout, "a request")

    def _flush_timeout(
        self,
        tracker: GoalTracker,
        goals: RequestGoals | None,
        carrier: Mapping[str, Any] | None,
    ) -> float | None:
        if goals is None or not goals.tracked:
            return None
        timeout = self.request_end_flush(tracker)
        if timeout is None:
            return None
        return flush_deadline(timeout, lambda_context_in(carrier))
