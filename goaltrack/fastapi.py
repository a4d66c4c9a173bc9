"""What a FastAPI app imports: the ASGI adapter's names, FastAPI's dependency among them.

- :class:`GoalTrackMiddleware` and :func:`track_goal` (the call, and the endpoint decorator that
  keeps the endpoint's signature, so FastAPI's parameters and OpenAPI schema are unchanged);
- :func:`goal_tracker` / ``GoalTrackerDep``: ``goals: GoalTrackerDep`` hands an endpoint its
  request's :class:`~goaltrack.context.RequestGoals` (``goals.track("checkout", {...})``);
- :func:`endpoint_status`: the status of an endpoint's answer when it returns plain data (FastAPI
  serializes it with the route's ``status_code``, or the one set on a ``response: Response``
  parameter), which ``@track_goal`` needs to apply the status < 400 rule.

All of them live in :mod:`goaltrack.asgi` (this module imports it; it never imports this one).
Nothing here imports FastAPI but ``GoalTrackerDep``, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from goaltrack.asgi import GoalTrackMiddleware, track_goal, track_payment
from goaltrack.asgi.tracking import endpoint_status, goal_tracker

if TYPE_CHECKING:
    from goaltrack.asgi.tracking import GoalTrackerDep

__all__ = [
    "GoalTrackMiddleware",
    "GoalTrackerDep",
    "endpoint_status",
    "goal_tracker",
    "track_goal",
    "track_payment",
]


def __getattr__(name: str) -> Any:
    if name == "GoalTrackerDep":  # needs FastAPI: built on first use
        from goaltrack.asgi import tracking

        return tracking.GoalTrackerDep
    raise AttributeError(f"module 'goaltrack.fastapi' has no attribute {name!r}")
