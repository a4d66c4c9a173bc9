"""Hooks and signals: the signals every adapter has, who sends them, every call isolated.

Every adapter (:mod:`goaltrack.django.signals`, :mod:`goaltrack.flask.signals`,
:mod:`goaltrack.asgi.signals`) has the same eight signals, one per kind of item (``goal``,
``payment``) and event (``tracked``, ``delivered``, ``failed``, ``dropped``), named by one scheme:
the Python name ``<kind>_<event>`` and, in blinker, ``goaltrack.<kind>-<event>``
(``goal_delivered`` is ``goaltrack.goal-delivered``, ``payment_failed`` is
``goaltrack.payment-failed``; Django's are the module's ``Signal`` objects of the Python names),
sent with the same sender and the same keyword arguments, the item under its kind's name:

- ``goal_tracked``: a goal was queued for delivery, in the thread that tracked it (the request's).
  Kwargs: ``name``, ``visitor`` (a :class:`~goaltrack.Visitor` or None), ``metadata`` (as given)
  and ``request`` (the framework's request, or None outside one). ``payment_tracked``: kwargs
  ``payment`` (the :class:`~goaltrack.Payment`), ``visitor`` and ``request``.
- ``goal_delivered`` / ``payment_delivered``: the provider stored it. Kwargs: ``goal`` (or
  ``payment``), ``result`` (``result.duplicate``: the API had the payment already).
- ``goal_failed`` / ``payment_failed``: the provider refused it, or goaltrack gave up retrying.
  Kwargs: ``goal`` (or ``payment``), ``result`` (a :class:`~goaltrack.DeliveryResult`) and
  ``reason``.
- ``goal_dropped`` / ``payment_dropped``: it was never sent (queue full, tracker closed). Kwargs:
  ``goal`` (or ``payment``), ``reason``.

**The sender is the** :class:`~goaltrack.GoalTracker` **instance the item went through**, in every
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
(the tracker options ``on_delivery``, ``on_failure``, ``on_drop``, which get goals and payments
alike). ``goal_tracked`` and ``payment_tracked`` are sent by the adapter that tracked the item,
on its own signal.

Each call is isolated: one that raises is logged with the item's label, and the next one still
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
from goaltrack.items import Tracked
from goaltrack.payments import Payment

__all__ = [
    "EVENTS",
    "KINDS",
    "SIGNAL_NAMES",
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

#: The events, each an adapter's ``<kind>_<event>`` signal.
EVENTS = ("tracked", "delivered", "failed", "dropped")
#: The kinds of item (``item.kind``), each with a signal per event.
KINDS = ("goal", "payment")
#: Every adapter's signals, by their Python names: ``goal_tracked``, ..., ``payment_dropped``.
SIGNAL_NAMES = tuple(f"{kind}_{event}" for kind in KINDS for event in EVENTS)
#: The names of blinker's signals (one scheme for every blinker adapter).
BLINKER_NAMES = {
    f"{kind}_{event}": f"goaltrack.{kind}-{event}" for kind in KINDS for event in EVENTS
}
_EVENT_DOCS = {
    "tracked": "A {kind} was queued for delivery.",
    "delivered": "The provider stored a {kind}.",
    "failed": "A {kind} will never be stored.",
    "dropped": "A {kind} was never sent.",
}
#: The docs of blinker's signals.
BLINKER_DOCS = {
    f"{kind}_{event}": doc.format(kind=kind) for kind in KINDS for event, doc in _EVENT_DOCS.items()
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
    """One adapter's signals (by :data:`SIGNAL_NAMES`) and how to send them robustly."""

    __slots__ = ("_send_robust", "signals")

    def __init__(self, signals: Mapping[str, Signal], *, send_robust: RobustSend) -> None:
        missing = set(SIGNAL_NAMES) - set(signals)
        if missing:
            raise TypeError(f"SignalSet needs a signal for each name; missing {sorted(missing)}")
        self.signals = dict(signals)
        self._send_robust = send_robust

    def emit(self, signal_name: str, sender: object, label: str, **kwargs: object) -> None:
        """Send the signal *signal_name* (``goal_delivered``) from *sender*; a receiver that
        raises is logged with the item's *label* (``goal 'signup'``)."""
        signal = self.signals[signal_name]
        if not signal.receivers:
            return
        try:
            outcomes = self._send_robust(signal, sender, kwargs)
        except Exception:  # the framework's own sending failed (Django's, on some receivers)
            logger.exception("goaltrack: sending %s failed for %s", signal_name, label)
            return
        for receiver, outcome in outcomes:
            if isinstance(outcome, Exception):
                logger.error(
                    "goaltrack: receiver %s of %s raised for %s",
                    getattr(receiver, "__qualname__", receiver),
                    signal_name,
                    label,
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
            "goal_tracked",
            sender,
            f"goal {name!r}",
            name=name,
            visitor=visitor,
            metadata=metadata,
            request=request,
        )

    def payment_tracked(
        self, sender: object, payment: Payment, visitor: Visitor | None, request: object
    ) -> None:
        """``payment_tracked`` from *sender* (the tracker), in the thread that tracked it."""
        self.emit(
            "payment_tracked",
            sender,
            payment.label,
            payment=payment,
            visitor=visitor,
            request=request,
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


def register_signals(signals: Mapping[str, Signal], *, send_robust: RobustSend) -> SignalSet:
    """:func:`register` an adapter's signals (by :data:`SIGNAL_NAMES`), sent with
    *send_robust*."""
    return register(SignalSet(signals, send_robust=send_robust))


def blinker_signals(new_signal: Callable[..., S]) -> dict[str, S]:
    """A blinker adapter's signals by :data:`SIGNAL_NAMES`: *new_signal* (its ``Namespace``'s
    ``signal``) called with each one's blinker name and doc."""
    return {name: new_signal(BLINKER_NAMES[name], doc=BLINKER_DOCS[name]) for name in SIGNAL_NAMES}


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

    def delivered(item: Tracked, result: DeliveryResult) -> None:
        _call_hook(on_delivery, "on_delivery", item, result)
        for signal_set in _registered:
            signal_set.emit(
                f"{item.kind}_delivered",
                sender_ref(),
                item.label,
                result=result,
                **{item.kind: item},
            )

    def failed(item: Tracked, result: DeliveryResult) -> None:
        _call_hook(on_failure, "on_failure", item, result)
        for signal_set in _registered:
            signal_set.emit(
                f"{item.kind}_failed",
                sender_ref(),
                item.label,
                result=result,
                reason=result.reason,
                **{item.kind: item},
            )

    def dropped(item: Tracked, reason: str) -> None:
        _call_hook(on_drop, "on_drop", item, reason)
        for signal_set in _registered:
            signal_set.emit(
                f"{item.kind}_dropped", sender_ref(), item.label, reason=reason, **{item.kind: item}
            )

    return {"on_delivery": delivered, "on_failure": failed, "on_drop": dropped}


def _call_hook(
    hook: Callable[..., object] | None, name: str, item: Tracked, detail: object
) -> None:
    if hook is None:
        return
    try:
        hook(item, detail)
    except Exception:
        logger.exception("goaltrack: the %s hook raised for %s", name, item.label)
