"""The signals goaltrack sends, for receivers that log, count or alert on goals.

The same eight signals (four for goals, the same four for payments), with the same sender and
arguments, as every goaltrack adapter (see :mod:`goaltrack.hooks`): each is sent with the
:class:`~goaltrack.GoalTracker` the goal went through as sender (the process's,
:func:`goaltrack.django.get_tracker`; it is built again when the ``GOALTRACK`` setting changes, so
connect without a sender to hear every goal) and keyword arguments:

- ``goal_tracked``: a goal was queued for delivery, in the thread that tracked it (the request
  thread). Kwargs: ``name``, ``visitor`` (a :class:`goaltrack.Visitor` or None), ``metadata``,
  ``request`` (or None outside a request).
- ``goal_delivered``: the API stored the goal. Kwargs: ``goal`` (:class:`goaltrack.Goal`),
  ``result`` (:class:`goaltrack.DeliveryResult`).
- ``goal_failed``: the API refused the goal, or goaltrack gave up after the last retry. Kwargs:
  ``goal``, ``result`` and ``reason`` (text).
- ``goal_dropped``: the goal was never sent (queue full, tracker closed). Kwargs: ``goal``,
  ``reason``.

``goal_delivered``, ``goal_failed`` and ``goal_dropped`` are sent by every tracker, with no
wiring, from goaltrack's worker thread, not from the request that tracked the goal: receivers
must be thread-safe, quick, and must not expect the request, the current visitor or a
request-scoped database transaction. A receiver that raises is logged with the goal's name; the
other receivers, the request and delivery carry on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.dispatch import Signal

from goaltrack.hooks import register_signals

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

goal_tracked = Signal()
goal_delivered = Signal()
goal_failed = Signal()
goal_dropped = Signal()
payment_tracked = Signal()
payment_delivered = Signal()
payment_failed = Signal()
payment_dropped = Signal()


def _send_robust(
    signal: Any, sender: object, kwargs: Mapping[str, object]
) -> Sequence[tuple[object, object]]:
    return signal.send_robust(sender, **kwargs)  # type: ignore[no-any-return]


signals = register_signals(
    {
        "goal_tracked": goal_tracked,
        "goal_delivered": goal_delivered,
        "goal_failed": goal_failed,
        "goal_dropped": goal_dropped,
        "payment_tracked": payment_tracked,
        "payment_delivered": payment_delivered,
        "payment_failed": payment_failed,
        "payment_dropped": payment_dropped,
    },
    send_robust=_send_robust,
)
