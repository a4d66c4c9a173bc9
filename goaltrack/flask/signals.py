"""The blinker signals goaltrack sends from a Flask app.

The same four signals, with the same arguments, as every goaltrack adapter (see
:mod:`goaltrack.hooks`); the sender is the Flask app the goal was tracked for (the real object,
never the ``current_app`` proxy), so ``goal_delivered.connect(receiver, app)`` hears one app's
goals only.

- ``goal_tracked``: a goal was queued for delivery, in the request's thread. Kwargs: ``name``,
  ``visitor`` (a :class:`goaltrack.Visitor` or None), ``metadata`` (as given) and ``request``
  (the Flask request, or None outside one). Receivers run inside the request: keep them fast.
- ``goal_delivered``: the provider recorded a goal. Kwargs: ``goal``, ``result``.
- ``goal_failed``: the provider refused the goal, or goaltrack gave up retrying. Kwargs:
  ``goal``, ``result`` and ``reason``.
- ``goal_dropped``: the goal was never sent (queue full, tracker closed). Kwargs: ``goal``,
  ``reason``.

The last three are sent from the delivery worker thread, outside any request or app context: do
not use ``request``, ``g`` or ``current_app`` in their receivers, use the sender. A receiver that
raises is logged with the goal's name; the other receivers and delivery carry on.
"""

from __future__ import annotations

from blinker import Namespace

from goaltrack.hooks import SignalSet, send_robust_blinker

__all__ = ["goal_delivered", "goal_dropped", "goal_failed", "goal_tracked"]

_namespace = Namespace()

goal_tracked = _namespace.signal("goaltrack-goal-tracked", doc="A goal was queued for delivery.")
goal_delivered = _namespace.signal("goaltrack-goal-delivered", doc="The provider stored a goal.")
goal_failed = _namespace.signal("goaltrack-goal-failed", doc="A goal will never be stored.")
goal_dropped = _namespace.signal("goaltrack-goal-dropped", doc="A goal was never sent.")

#: The signals with no sender yet: each app gets its own set (``signals.with_sender(app)``).
signals = SignalSet(
    {
        "tracked": goal_tracked,
        "delivered": goal_delivered,
        "failed": goal_failed,
        "dropped": goal_dropped,
    },
    sender=None,
    send_robust=send_robust_blinker,
)
