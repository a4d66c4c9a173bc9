"""Hooks and signals: what each adapter emits, in one order, every call isolated.

Each adapter has the same four signals, sent with the same keyword arguments:

- ``goal_tracked``: a goal was queued for delivery, in the thread that tracked it (the request's).
  Kwargs: ``name``, ``visitor`` (a :class:`~goaltrack.Visitor` or None), ``metadata`` (as given)
  and ``request`` (the framework's request, or None outside one).
- ``goal_delivered``: the provider stored the goal. Kwargs: ``goal``, ``result``.
- ``goal_failed``: the provider refused the goal, or goaltrack gave up retrying. Kwargs: ``goal``,
  ``result`` (a :class:`~goaltrack.DeliveryResult`) and ``reason``.
- ``goal_dropped``: the goal was never sent (queue full, tracker closed). Kwargs: ``goal``,
  ``reason``.

The sender is the owner of the tracker the goal went through: the Flask app, where each app has
its tracker; :class:`~goaltrack.GoalTracker` (the class) in Django and ASGI, where the tracker is
the process's or the middleware's.

For a settled goal the user's hook runs first (the tracker options ``on_delivery``,
``on_failure``, ``on_drop``), then the signal's receivers. Each call is isolated: one that raises
is logged with the goal's name, and the next one still runs; nothing raises into the request, the
delivery worker or the code that tracked the goal. The delivery signals come from goaltrack's
worker thread: receivers must be thread-safe and quick, and must not expect the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from goaltrack.cookies import Visitor
from goaltrack.delivery import DeliveryResult
from goaltrack.goals import Goal

__all__ = ["EVENTS", "Signal", "SignalSet", "send_robust_blinker"]

logger = logging.getLogger("goaltrack")

#: The events, each an adapter's ``goal_<event>`` signal.
EVENTS = ("tracked", "delivered", "failed", "dropped")
#: The tracker hook each settled event follows.
_HOOKS = {"delivered": "on_delivery", "failed": "on_failure", "dropped": "on_drop"}


class Signal(Protocol):
    """What goaltrack needs of a signal: Django's ``Signal`` and blinker's both have it."""

    @property
    def receivers(self) -> Any: ...


#: Sends *signal* from *sender* with *kwargs* to each receiver, each call isolated:
#: ``[(receiver, its result or the exception it raised), ...]``.
RobustSend = Callable[[Any, object, Mapping[str, object]], Sequence[tuple[object, object]]]


def send_robust_blinker(
    signal: Any, sender: object, kwargs: Mapping[str, object]
) -> list[tuple[object, object]]:
    """:data:`RobustSend` for a blinker signal (blinker's own ``send`` stops at the first error)."""
    results: list[tuple[object, object]] = []
    for receiver in signal.receivers_for(sender):
        try:
            results.append((receiver, receiver(sender, **kwargs)))
        except Exception as exc:
            results.append((receiver, exc))
    return results


class SignalSet:
    """One adapter's four signals, the sender they go out with, and how to send them robustly."""

    __slots__ = ("_send_robust", "sender", "signals")

    def __init__(
        self, signals: Mapping[str, Signal], *, sender: object, send_robust: RobustSend
    ) -> None:
        missing = set(EVENTS) - set(signals)
        if missing:
            raise TypeError(f"SignalSet needs a signal for each event; missing {sorted(missing)}")
        self.signals = dict(signals)
        self.sender = sender
        self._send_robust = send_robust

    def with_sender(self, sender: object) -> SignalSet:
        """The same signals sent from *sender* (a Flask app's own set)."""
        return SignalSet(self.signals, sender=sender, send_robust=self._send_robust)

    def emit(self, event: str, goal_name: str, **kwargs: object) -> None:
        """Send ``goal_<event>``; a receiver that raises is logged with the goal's name."""
        signal = self.signals[event]
        if not signal.receivers:
            return
        try:
            outcomes = self._send_robust(signal, self.sender, kwargs)
        except Exception:  # the framework's own sending failed (Django's, on some receivers)
            logger.exception("goaltrack: sending goal_%s failed for goal %r", event, goal_name)
            return
        for receiver, outcome in outcomes:
            if isinstance(outcome, Exception):
                logger.error(
                    "goaltrack: receiver %s of goal_%s raised for goal %r",
                    getattr(receiver, "__qualname__", receiver),
                    event,
                    goal_name,
                    exc_info=outcome,
                )

    def tracked(
        self,
        name: str,
        visitor: Visitor | None,
        metadata: Mapping[str, object] | None,
        request: object,
    ) -> None:
        """``goal_tracked``, from the thread that tracked the goal."""
        self.emit("tracked", name, name=name, visitor=visitor, metadata=metadata, request=request)

    def tracker_hooks(self, user_hooks: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``on_delivery`` / ``on_failure`` / ``on_drop`` for a tracker: *user_hooks*, then signals.

        *user_hooks* maps hook names to the user's callables (or None); any other key is refused.
        """
        hooks = dict(user_hooks or {})
        unknown = set(hooks) - set(_HOOKS.values())
        if unknown:
            raise TypeError(f"unknown hook(s): {', '.join(sorted(unknown))}")
        on_delivery = hooks.get("on_delivery")
        on_failure = hooks.get("on_failure")
        on_drop = hooks.get("on_drop")

        def delivered(goal: Goal, result: DeliveryResult) -> None:
            _call_hook(on_delivery, "on_delivery", goal, result)
            self.emit("delivered", goal.name, goal=goal, result=result)

        def failed(goal: Goal, result: DeliveryResult) -> None:
            _call_hook(on_failure, "on_failure", goal, result)
            self.emit("failed", goal.name, goal=goal, result=result, reason=result.reason)

        def dropped(goal: Goal, reason: str) -> None:
            _call_hook(on_drop, "on_drop", goal, reason)
            self.emit("dropped", goal.name, goal=goal, reason=reason)

        return {"on_delivery": delivered, "on_failure": failed, "on_drop": dropped}


def _call_hook(hook: Callable[..., object] | None, name: str, goal: Goal, detail: object) -> None:
    if hook is None:
        return
    try:
        hook(goal, detail)
    except Exception:
        logger.exception("goaltrack: the %s hook raised for goal %r", name, goal.name)
