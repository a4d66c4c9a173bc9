"""The blinker signals goaltrack sends for Flask apps.

The same eight signals, names, sender and arguments as every goaltrack adapter (see
:mod:`goaltrack.hooks`): ``goal_tracked``, ``goal_delivered``, ``goal_failed`` and
``goal_dropped``, and the same four for payments (``payment_tracked`` ...), named
``goaltrack.goal-tracked`` ... ``goaltrack.payment-tracked`` ... in blinker, sent with the
:class:`~goaltrack.GoalTracker` the goal went through as sender. Each app has its own tracker, so
``goal_delivered.connect(receiver, get_tracker(app))`` hears one app's goals only.

- ``goal_tracked``: a goal was queued for delivery, in the request's thread. Kwargs: ``name``,
  ``visitor`` (a :class:`goaltrack.Visitor` or None), ``metadata`` (as given) and ``request``
  (the Flask request, or None outside one). Receivers run inside the request: keep them fast.
- ``goal_delivered``: the provider recorded a goal. Kwargs: ``goal``, ``result``.
- ``goal_failed``: the provider refused the goal, or goaltrack gave up retrying. Kwargs:
  ``goal``, ``result`` and ``reason``.
- ``goal_dropped``: the goal was never sent (queue full, tracker closed). Kwargs: ``goal``,
  ``reason``.

The last three are sent by every tracker, with no wiring, from the delivery worker thread,
outside any request or app context: do not use ``request``, ``g`` or ``current_app`` in their
receivers. A receiver that raises is logged with the goal's name; the other receivers and
delivery carry on.
"""

from __future__ import annotations

from blinker import Namespace

from goaltrack.hooks import blinker_signals, register_signals, send_robust_blinker

__all__ = [
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
