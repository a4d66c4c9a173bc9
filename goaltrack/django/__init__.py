"""goaltrack for Django: ``INSTALLED_APPS``, a middleware, ``track_goal`` and signals.

Add ``"goaltrack.django"`` to ``INSTALLED_APPS``, its middleware
(``"goaltrack.django.middleware.GoalTrackMiddleware"``) to ``MIDDLEWARE`` and a
``GOALTRACK = {"API_KEY": ..., "PROVIDER": ...}`` setting; then call
``track_goal(request, "signup")`` or decorate a view with ``@track_goal("signup")``, and
``track_payment(request, amount, currency, transaction_id, visitor_id=...)`` for revenue.
"""

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without Django installed
    raise ImportError("goaltrack.django needs Django: pip install 'goaltrack[django]'") from exc

from goaltrack import tracker as _tracker
from goaltrack.django.helpers import (
    RequestGoals,
    connect_goal,
    current_visitor,
    track_goal,
    track_payment,
)
from goaltrack.django.signals import (
    goal_delivered,
    goal_dropped,
    goal_failed,
    goal_tracked,
    payment_delivered,
    payment_dropped,
    payment_failed,
    payment_tracked,
)

__all__ = [
    "RequestGoals",
    "connect_goal",
    "current_visitor",
    "get_tracker",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracked",
    "payment_delivered",
    "payment_dropped",
    "payment_failed",
    "payment_tracked",
    "track_goal",
    "track_payment",
]


def get_tracker() -> _tracker.GoalTracker:
    """The tracker goals tracked in this project go through, and the sender of the signals: the
    process's, built from the ``GOALTRACK`` setting."""
    return _tracker.get_tracker()
