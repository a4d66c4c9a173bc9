"""The blinker signals goaltrack sends for ASGI apps (Starlette, FastAPI, any other).

The same eight signals, names, sender and arguments as every goaltrack adapter (see
:mod:`goaltrack.hooks`): ``goal_tracked``, ``goal_delivered``, ``goal_failed`` and
``goal_dropped``, and the same four for payments (``payment_tracked`` ...), named
``goaltrack.goal-tracked`` ... ``goaltrack.payment-tracked`` ... in blinker, sent with the
:class:`~goaltrack.GoalTracker` the goal went through as sender (the middleware's own, or the
process-wide one). Every tracker sends the delivery signals, with no wiring, from goaltrack's
worker thread.
"""

from __future__ import annotations

from blinker import Namespace

from goaltrack.adapter import Adapter
from goaltrack.context import current_goals
from goaltrack.hooks import blinker_signals, register_signals, send_robust_blinker
from goaltrack.tracker import GoalTracker

__all__ = [
    "get_tracker",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracked",
    "payment_delivered",
    "payment_dropped",
    "payment_failed",
    "payment_tracked",
]

_made = blinker_signals(Namespace().signal)
goal_tracked = _made["goal_tracked"]
goal_delivered = _made["goal_delivered"]
goal_failed = _made["goal_failed"]
goal_dropped = _made["goal_dropped"]
payment_tracked = _made["payment_tracked"]
payment_delivered = _made["payment_delivered"]
payment_failed = _made["payment_failed"]
payment_dropped = _made["payment_dropped"]
signals = register_signals(_made, send_robust=send_robust_blinker)
#: For goals tracked outside a request, and in requests no middleware saw: the process's tracker.
process_adapter = Adapter(signals)


def get_tracker() -> GoalTracker:
    """The tracker goals tracked here go through, and the sender of their signals: the current
    request's middleware's, else (outside a request) the process-wide one."""
    goals = current_goals()
    return goals.adapter.tracker if goals is not None else process_adapter.tracker
