"""The signals goaltrack sends, for receivers that log, count or alert on goals.

Every signal is sent with ``sender=GoalTracker`` (the class) and keyword arguments:

- ``goal_tracked``: a goal was accepted for delivery, in the thread that tracked it (the request
  thread). Kwargs: ``name``, ``visitor`` (a :class:`goaltrack.Visitor` or None), ``metadata``,
  ``request`` (or None outside a request).
- ``goal_delivered``: the API stored the goal. Kwargs: ``goal`` (:class:`goaltrack.Goal`),
  ``result`` (:class:`goaltrack.DeliveryResult`).
- ``goal_failed``: the goal will never be stored: refused by the API, given up after the last
  retry, or dropped (queue full, tracker closed). Kwargs: ``goal``, ``result`` (a
  ``DeliveryResult``, or None when dropped) and ``reason`` (text).

``goal_delivered`` and ``goal_failed`` are sent from goaltrack's worker thread, not from the
request that tracked the goal: receivers must be thread-safe, quick, and must not expect the
request, the current visitor or a request-scoped database transaction. An exception raised by a
receiver is logged and does not stop delivery.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["goal_delivered", "goal_failed", "goal_tracked"]

goal_tracked = Signal()
goal_delivered = Signal()
goal_failed = Signal()
