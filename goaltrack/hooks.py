"""Hooks and signals: the four signals every adapter has, who sends them, every call isolated.

Every adapter (:mod:`goaltrack.django.signals`, :mod:`goaltrack.flask.signals`,
:mod:`goaltrack.asgi.signals`) has the same four signals, named alike (blinker's are
``goaltrack.goal-tracked``, ``goaltrack.goal-delivered``, ``goaltrack.goal-failed`` and
``goaltrack.goal-dropped``; Django's are the module's ``Signal`` objects of the same Python names),
sent with the same sender and the same keyword arguments:

- ``goal_tracked``: a goal was queued for delivery, in the thread that tracked it (the request's).
  Kwargs: ``name``, ``visitor`` (a :class:`~goaltrack.Visitor` or None), ``metadata`` (as given)
  and ``request`` (the framework's request, or None outside one).
- ``goal_delivered``: the provider stored the goal. Kwargs: ``goal``, ``result``.
- ``goal_failed``: the provider refused the goal, or goaltrack gave up retrying. Kwargs: ``goal``,
  ``result`` (a :class:`~goaltrack.DeliveryResult`) and ``reason``.
- ``goal_dropped``: the goal was never sent (queue full, tracker closed). Kwargs: ``goal``,
  ``reason``.

**The sender is the** :class:`~goaltrack.GoalTracker` **instance the goal went through**, in every
adapter: the one the adapter's ``get_tracker()`` returns (``goaltrack.flask.get_tracker(app)``,
``goaltrack.django.get_tracker()``, ``goaltrack.asgi.get_tracker()``; ``goaltrack.get_tracker()``
for the process-wide one). Why the tracker: it is the one object every framework has, and the
only one the delivery worker knows, so the same filter works everywhere: connect without a sender
to hear every goal, or ``goal_delivered.connect(receiver, sender=get_tracker())`` to hear one
tracker's (one Flask app's, one middleware's). A class as sender filters nothing, and the app
exists in Flask only. Receivers that need the app or the request use ``goal_tracked``'s
``request``, or the goal itself. A tracker built again (Django's ``override_settings``, a second
``goaltrack.configure()``) is a new sender: connect without one, or again.

The delivery signals need no wiring: each adapter's signal module registers its signals here
(:func:`register_signals`; a blinker adapter makes them with :func:`blinker_signals`) when it is
imported, and every :class:`~goaltrack.GoalTracker` (the process-wide one, one built by hand, a
middleware's or an app's) sends each registered set's delivery signals, after the user's hook
(the tracker options ``on_delivery``, ``on_failure``, ``on_drop``). ``goal_tracked`` is sent by
the adapter that tracked the goal, on its own signal.

Each call is isolated: one that raises is logged with the goal's name, and the next one still
runs; nothing raises into the request, the delivery worker or the code that tracked the goal. The
delivery signals come from goaltrack's worker thread: receivers must be thread-safe and quick,
and must not expect the request.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from goaltrack.cookies import Visitor
from goaltrack.delivery import DeliveryResult
from goaltrack.goals import Goal

__all__ = [
    "EVENTS",
    "Signal",
    "SignalSet",
    "blinker_signals",
    "register",
    "register_signals",
    "send_robust_blinker",
    "signal_sets",
    "signalled_hooks",
]

logger = logging.getLogger("goaltrack")

#: The events, each an adapter's ``goal_<event>`` signal.
EVENTS = ("tracked", "delivered", "failed", "dropped")
#: The names of blinker's signals (one scheme for every blinker adapter).
BLINKER_NAMES = {event: f"goaltrack.goal-{event}" for event in EVENTS}
#: The docs of blinker's signals.
BLINKER_DOCS = {
    "tracked": "A goal was queued for delivery.",
    "delivered": "The provider stored a goal.",
    "failed": "A goal will never be stored.",
    "dropped": "A goal was never sent.",
}

S = TypeVar("S")


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
    """One adapter's four signals and how to send them robustly."""

    __slots__ = ("_send_robust", "signals")

    def __init__(self, signals: Mapping[str, Signal], *, send_robust: RobustSend) -> None:
        missing = set(EVENTS) - set(signals)
        if missing:
            raise TypeError(f"SignalSet needs a signal for each event; missing {sorted(missing)}")
        self.signals = dict(signals)
        self._send_robust = send_robust

    def emit(self, event: str, sender: object, goal_name: str, **kwargs: object) -> None:
        """Send ``goal_<event>`` from *sender*; a receiver that raises is logged with the goal's
        name."""
        signal = self.signals[event]
        if not signal.receivers:
            return
        try:
            outcomes = self._send_robust(signal, sender, kwargs)
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
        sender: object,
        name: str,
        visitor: Visitor | None,
        metadata: Mapping[str, object] | None,
        request: object,
    ) -> None:
        """``goal_tracked`` from *sender* (the tracker), in the thread that tracked the goal."""
        self.emit(
            "tracked", sender, name, name=name, visitor=visitor, metadata=metadata, request=request
        )


_registered: tuple[SignalSet, ...] = ()
_register_lock = threading.Lock()


def register(signal_set: SignalSet) -> SignalSet:
    """Have every tracker send *signal_set*'s delivery signals (an adapter's, at import)."""
    global _registered
    with _register_lock:
        if signal_set not in _registered:
            _registered = (*_registered, signal_set)
    return signal_set


def register_signals(
    tracked: Signal, delivered: Signal, failed: Signal, dropped: Signal, *, send_robust: RobustSend
) -> SignalSet:
    """:func:`register` an adapter's four signals, sent with *send_robust*."""
    return register(
        SignalSet(
            {"tracked": tracked, "delivered": delivered, "failed": failed, "dropped": dropped},
            send_robust=send_robust,
        )
    )


def blinker_signals(new_signal: Callable[..., S]) -> tuple[S, S, S, S]:
    """A blinker adapter's four signals, in the order of :data:`EVENTS`: *new_signal* (its
    ``Namespace``'s ``signal``) called with each one's name and doc."""
    tracked, delivered, failed, dropped = (
        new_signal(BLINKER_NAMES[event], doc=BLINKER_DOCS[event]) for event in EVENTS
    )
    return tracked, delivered, failed, dropped


def signal_sets() -> tuple[SignalSet, ...]:
    """The registered signal sets, in the order they were registered."""
    return _registered


def signalled_hooks(
    sender: object,
    *,
    on_delivery: Callable[..., object] | None = None,
    on_failure: Callable[..., object] | None = None,
    on_drop: Callable[..., object] | None = None,
) -> dict[str, Callable[..., None]]:
    """A tracker's ``on_delivery`` / ``on_failure`` / ``on_drop``: the user's hook, then the
    delivery signal of every registered set (those registered later included), from *sender*.

    *sender* is held weakly (the tracker holds these hooks): goals a collected tracker's worker
    still settles go out with sender None.
    """
    sender_ref = weakref.ref(sender)

    def delivered(goal: Goal, result: DeliveryResult) -> None:
        _call_hook(on_delivery, "on_delivery", goal, result)
        for signal_set in _registered:
            signal_set.emit("delivered", sender_ref(), goal.name, goal=goal, result=result)

    def failed(goal: Goal, result: DeliveryResult) -> None:
        _call_hook(on_failure, "on_failure", goal, result)
        for signal_set in _registered:
            signal_set.emit(
                "failed", sender_ref(), goal.name, goal=goal, result=result, reason=result.reason
            )

    def dropped(goal: Goal, reason: str) -> None:
        _call_hook(on_drop, "on_drop", goal, reason)
        for signal_set in _registered:
            signal_set.emit("dropped", sender_ref(), goal.name, goal=goal, reason=reason)

    return {"on_delivery": delivered, "on_failure": failed, "on_drop": dropped}


def _call_hook(hook: Callable[..., object] | None, name: str, goal: Goal, detail: object) -> None:
    if hook is None:
        return
    try:
        hook(goal, detail)
    except Exception:
        logger.exception("goaltrack: the %s hook raised for goal %r", name, goal.name)
