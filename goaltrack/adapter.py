"""One installed adapter: its tracker, its request options, its signals, the flush at the end of
a request; and every option an adapter reads (the settings section below).

An adapter (Django's, Flask's, ASGI's) connects its framework to the core in these places:

- :class:`Adapter` here: where its tracker is, ``skip_bots``, ``flush_at_request_end``, its four
  signals (:mod:`goaltrack.hooks`), and where a goal waits for a commit (:meth:`Adapter.at_commit`,
  Django only);
- :mod:`goaltrack.context`: the request context (the current visitor, bound per request) and
  :class:`~goaltrack.context.RequestGoals`, subclassed to say what a request is;
- :mod:`goaltrack.bots`: the bot rule;
- :mod:`goaltrack.decorator`: goals asked for by a decorator or a signal connection;
- :mod:`goaltrack.startup`: building its tracker from configuration;
- :func:`read_settings` (below): every option, with one meaning, converted from strings alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from goaltrack.config import coerce_option, parse_bool, parse_flush_at_request_end
from goaltrack.hooks import SignalSet
from goaltrack.tracker import GoalTracker, TrackerOptions, get_tracker

if TYPE_CHECKING:
    from goaltrack.context import RequestGoals

__all__ = [
    "ACCOUNT_OPTIONS",
    "ADAPTER_OPTIONS",
    "HOOK_OPTIONS",
    "OPTIONS",
    "TRACKER_OPTIONS",
    "Adapter",
    "AdapterSettings",
    "read_settings",
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


# -- settings ------------------------------------------------------------------------------------

#: The account arguments of :class:`~goaltrack.GoalTracker`.
ACCOUNT_OPTIONS: dict[str, object] = {
    "api_key": None,
    "provider": "datafast",
    "api_url": None,
    "website_id": None,
}
#: The tracker's options (hooks included), with their defaults.
TRACKER_OPTIONS: dict[str, object] = {
    f.name: f.default for f in fields(TrackerOptions) if f.default is not MISSING
}
HOOK_OPTIONS = ("on_delivery", "on_failure", "on_drop")
#: What the adapters add: the same meaning in each.
ADAPTER_OPTIONS: dict[str, object] = {"skip_bots": True, "flush_at_request_end": False}
#: Every option an adapter reads, with its default.
OPTIONS: dict[str, object] = {**ACCOUNT_OPTIONS, **TRACKER_OPTIONS, **ADAPTER_OPTIONS}


@dataclass(frozen=True)
class AdapterSettings:
    """An adapter's options, converted and checked: what it builds its tracker and adapter with."""

    tracker_kwargs: dict[str, Any]
    """For ``GoalTracker(**...)`` / ``goaltrack.configure(**...)``: given options, hooks aside."""
    hooks: dict[str, Any]
    """The user's ``on_delivery`` / ``on_failure`` / ``on_drop`` (given ones only)."""
    skip_bots: bool = True
    """Requests from known crawlers track nothing."""
    flush_at_request_end: float | None = None
    """Seconds a request that tracked goals waits for their delivery before it ends; None: no
    waiting. For hosts that freeze the process once the response is sent (serverless)."""

    def check_tracker_options(self) -> None:
        """Raise for tracker options that cannot work, as ``GoalTracker(...)`` would."""
        given = {**self.tracker_kwargs, **self.hooks}
        TrackerOptions.from_options({k: v for k, v in given.items() if k in TRACKER_OPTIONS})


def read_settings(
    values: Mapping[str, object], label: Callable[[str], str] = str
) -> AdapterSettings:
    """:class:`AdapterSettings` from option values by name (``max_retries``, ``skip_bots``, ...).

    Strings are converted (``"false"``, ``"3"``, ``"0.5"``, ``"pkg.module:hook"``); None means not
    given. *label* spells a name as the user wrote it (``GOALTRACK_MAX_RETRIES``), for errors.
    Raises :class:`~goaltrack.InvalidConfiguration` for a value that cannot be converted, and
    TypeError for an unknown name.
    """
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown goaltrack option(s): {', '.join(map(label, unknown))}; "
            f"known: {', '.join(map(label, OPTIONS))}"
        )
    converted = {
        name: coerce_option(name, value, OPTIONS[name], label(name))
        for name, value in values.items()
        if value is not None
    }
    skip_bots = parse_bool(label("skip_bots"), converted.pop("skip_bots", True))
    flush = parse_flush_at_request_end(
        label("flush_at_request_end"), converted.pop("flush_at_request_end", None)
    )
    hooks = {name: converted.pop(name) for name in HOOK_OPTIONS if name in converted}
    return AdapterSettings(converted, hooks, skip_bots, flush)
