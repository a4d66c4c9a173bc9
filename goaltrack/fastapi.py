"""FastAPI's side of the ASGI adapter: the dependency, and FastAPI's rules for an endpoint.

- :func:`goal_tracker` / ``GoalTrackerDep``: ``goals: GoalTrackerDep`` hands an endpoint its
  request's :class:`~goaltrack.adapter.RequestGoals` (``goals.track("checkout", {...})``);
- :func:`endpoint_status`: the status of an endpoint's answer when it returns plain data (FastAPI
  serializes it with the route's ``status_code``, or the one set on a ``response: Response``
  parameter), which ``@track_goal`` needs to apply the status < 400 rule.

The middleware and ``track_goal`` are :mod:`goaltrack.asgi`'s (importable from here too). Nothing
here imports FastAPI but ``GoalTrackerDep``, on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from goaltrack.adapter import RequestGoals, current_goals

if TYPE_CHECKING:
    from typing import Annotated

    from fastapi import Depends

    from goaltrack.asgi import GoalTrackMiddleware, track_goal

__all__ = ["GoalTrackMiddleware", "GoalTrackerDep", "endpoint_status", "goal_tracker", "track_goal"]


async def goal_tracker() -> RequestGoals:
    """FastAPI dependency: ``goals: RequestGoals = Depends(goal_tracker)`` or ``GoalTrackerDep``.

    Async on purpose: FastAPI runs sync dependencies in its thread pool.
    """
    goals = current_goals()
    if goals is None:
        raise RuntimeError(
            "goaltrack: goal_tracker needs GoalTrackMiddleware: "
            "app.add_middleware(GoalTrackMiddleware, ...)"
        )
    return goals


def endpoint_status(result: Any, kwargs: Mapping[str, Any], scope: Mapping[str, Any] | None) -> int:
    """The status an endpoint answers with: its response's, else what FastAPI will send for data."""
    status = getattr(result, "status_code", None)
    if isinstance(status, int):
        return status
    # A FastAPI endpoint returning data may have set the status on its `response: Response`.
    responses = sys.modules.get("starlette.responses")
    if responses is not None:
        for value in kwargs.values():
            if isinstance(value, responses.Response) and isinstance(value.status_code, int):
                return value.status_code
    route = scope.get("route") if scope is not None else None
    route_status = getattr(route, "status_code", None)
    return route_status if isinstance(route_status, int) else 200


if TYPE_CHECKING:
    GoalTrackerDep = Annotated[RequestGoals, Depends(goal_tracker)]
else:

    def __getattr__(name: str) -> Any:
        if name == "GoalTrackerDep":
            try:
                from fastapi import Depends
            except ImportError as exc:
                raise ImportError(
                    "goaltrack.fastapi.GoalTrackerDep needs FastAPI: pip install fastapi"
                ) from exc
            from typing import Annotated

            dependency = Annotated[RequestGoals, Depends(goal_tracker)]
            globals()[name] = dependency
            return dependency
        if name in ("GoalTrackMiddleware", "track_goal"):
            from goaltrack import asgi

            return getattr(asgi, name)
        raise AttributeError(f"module 'goaltrack.fastapi' has no attribute {name!r}")
