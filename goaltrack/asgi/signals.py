"""The blinker signals goaltrack sends from ASGI apps, and the hooks that send them.

The same four signals, with the same arguments, as every goaltrack adapter (see
:mod:`goaltrack.hooks`), sent with ``sender=GoalTracker`` (the class: the tracker is the
middleware's or the process's). The delivery signals come from goaltrack's worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from blinker import Namespace

from goaltrack.adapter import Adapter
from goaltrack.hooks import SignalSet, send_robust_blinker
from goaltrack.tracker import GoalTracker

__all__ = ["goal_delivered", "goal_dropped", "goal_failed", "goal_tracked", "signal_hooks"]

_namespace = Namespace()
# Arguments and threads as in every adapter (goaltrack.hooks); the sender is GoalTracker.
goal_tracked = _namespace.signal("goaltrack.goal-tracked")
goal_delivered = _namespace.signal("goaltrack.goal-delivered")
goal_failed = _namespace.signal("goaltrack.goal-failed")
goal_dropped = _namespace.signal("goaltrack.goal-dropped")
signals = SignalSet(
    {
        "tracked": goal_tracked,
        "delivered": goal_delivered,
        "failed": goal_failed,
        "dropped": goal_dropped,
    },
    sender=GoalTracker,
    send_robust=send_robust_blinker,
)
#: For signals sent outside a request, and goals of requests no middleware saw: the process's.
process_adapter = Adapter(signals)


def signal_hooks(**user_hooks: Callable[..., object] | None) -> dict[str, Callable[..., object]]:
    """Tracker hooks calling the given ``on_delivery`` / ``on_failure`` / ``on_drop``, then the
    signals. The middleware installs them on the trackers it builds; for the process-wide one:
    ``goaltrack.configure(**signal_hooks())``."""
    return signals.tracker_hooks(user_hooks)
