"""The ASGI adapter: one pure ASGI middleware for Starlette, FastAPI and any other ASGI app.

This package is ASGI's glue to the core (:mod:`goaltrack.adapter`, :mod:`goaltrack.context`,
:mod:`goaltrack.decorator`): :class:`GoalTrackMiddleware` (``middleware``: the visitor from the
raw ``Cookie`` header once per HTTP request, the flush at request end and at lifespan shutdown),
:func:`track_goal` (a call on a request or scope, or an endpoint decorator), :func:`connect_goal`
and FastAPI's dependency ``GoalTrackerDep`` / :func:`goal_tracker` (``tracking``), the
blinker signals ``goal_tracked`` / ``goal_delivered`` / ``goal_failed`` / ``goal_dropped``
(``signals``), and :func:`script_global`, the script tag as a Jinja global (``script``).
:mod:`goaltrack.fastapi` imports from here, never the reverse.

Nothing here needs Starlette: the middleware speaks plain ASGI, and ``track_goal`` takes anything
with a ``.scope`` (a Starlette/FastAPI ``Request``) or a raw scope.

Which tracker the middleware uses:

- ``tracker=``: that one;
- else, when any tracker argument is given (``api_key``, ``provider``, ``api_url``,
  ``website_id``, hooks, options): a tracker of its own, built from those arguments with the
  ``GOALTRACK_*`` environment variables filling in what is not given;
- else (``GoalTrackMiddleware(app)``): the process-wide tracker of ``goaltrack.configure()`` /
  ``GOALTRACK_*``, looked up per request so that ``configure()`` may run after the app is built.

Every tracker sends the delivery signals, with no wiring; :func:`get_tracker` is the one the
current request's goals go through (the signals' sender).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    import blinker  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("goaltrack.asgi needs blinker: pip install 'goaltrack[asgi]'") from exc

from goaltrack.asgi.middleware import GoalTrackMiddleware, RequestGoals
from goaltrack.asgi.script import script_global
from goaltrack.asgi.signals import (
    get_tracker,
    goal_delivered,
    goal_dropped,
    goal_failed,
    goal_tracked,
    payment_delivered,
    payment_dropped,
    payment_failed,
    payment_tracked,
)
from goaltrack.asgi.tracking import connect_goal, goal_tracker, track_goal, track_payment
from goaltrack.context import current_goals, current_visitor

if TYPE_CHECKING:
    from goaltrack.asgi.tracking import GoalTrackerDep

__all__ = [
    "GoalTrackMiddleware",
    "GoalTrackerDep",
    "RequestGoals",
    "connect_goal",
    "current_goals",
    "current_visitor",
    "get_tracker",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracked",
    "goal_tracker",
    "payment_delivered",
    "payment_dropped",
    "payment_failed",
    "payment_tracked",
    "script_global",
    "track_goal",
    "track_payment",
]


def __getattr__(name: str) -> Any:
    if name == "GoalTrackerDep":  # needs FastAPI: built on first use
        from goaltrack.asgi import tracking

        return tracking.GoalTrackerDep
    raise AttributeError(f"module 'goaltrack.asgi' has no attribute {name!r}")
