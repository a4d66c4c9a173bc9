"""goaltrack.hooks, unit by unit: the signal set, the registry, a tracker's signalled hooks."""

from __future__ import annotations

import gc
import logging
from typing import Any

import pytest
from blinker import Namespace

import goaltrack.hooks
from goaltrack import DeliveryResult, Goal
from goaltrack.delivery import Outcome
from goaltrack.hooks import (
    SIGNAL_NAMES,
    SignalSet,
    register,
    send_robust_blinker,
    signal_sets,
    signalled_hooks,
)
from goaltrack.providers import get_provider

VISITOR = "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21"


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sets a test registers are gone after it: no later tracker sends them."""
    monkeypatch.setattr(goaltrack.hooks, "_registered", goaltrack.hooks._registered)


def a_set() -> tuple[SignalSet, dict[str, Any]]:
    namespace = Namespace()
    signals = {name: namespace.signal(f"test.{name}") for name in SIGNAL_NAMES}
    return SignalSet(signals, send_robust=send_robust_blinker), signals


def a_goal(name: str = "signup") -> Goal:
    return Goal.create(get_provider("datafast"), name, visitor_id=VISITOR)


class Sender:
    """Stands in for a tracker: anything weakly referenceable."""


def test_a_set_needs_every_event() -> None:
    namespace = Namespace()
    with pytest.raises(TypeError, match="payment_dropped"):
        SignalSet(
            {name: namespace.signal(name) for name in SIGNAL_NAMES[:-1]},
            send_robust=send_robust_blinker,
        )


def test_register_keeps_one_entry_per_set_in_order() -> None:
    first, _ = a_set()
    second, _ = a_set()
    assert register(first) is first
    register(second)
    register(first)
    registered = signal_sets()
    assert registered.count(first) == 1
    assert registered.index(first) < registered.index(second)


def test_the_users_hook_then_every_registered_set_each_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signal_set, signals = a_set()
    register(signal_set)
    sender = Sender()
    order: list[str] = []

    def users_hook(goal: Goal, result: DeliveryResult) -> None:
        order.append("hook")
        raise RuntimeError("hook bug")

    def broken(sender: object, **kwargs: Any) -> None:
        order.append("broken")
        raise RuntimeError("receiver bug")

    def receiver(sender: object, **kwargs: Any) -> None:
        order.append("receiver")

    signals["goal_delivered"].connect(broken)
    signals["goal_delivered"].connect(receiver, sender=sender)
    hooks = signalled_hooks(sender, on_delivery=users_hook)
    result = DeliveryResult(Outcome.DELIVERED, "delivered", status=200)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        hooks["on_delivery"](a_goal(), result)  # never raises
    assert order[0] == "hook"
    assert sorted(order[1:]) == ["broken", "receiver"]
    assert "the on_delivery hook raised for goal 'signup'" in caplog.text
    assert "of goal_delivered raised for goal 'signup'" in caplog.text


def test_failed_and_dropped_carry_their_reason() -> None:
    signal_set, signals = a_set()
    register(signal_set)
    sender = Sender()
    calls: list[tuple[str, object, dict[str, Any]]] = []
    for event in ("failed", "dropped"):
        signals[f"goal_{event}"].connect(
            lambda s, event=event, **kw: calls.append((event, s, kw)), sender=sender, weak=False
        )
    hooks = signalled_hooks(sender)
    refused = DeliveryResult(Outcome.FAILED, "HTTP 404: no pageview", status=404)
    hooks["on_failure"](a_goal("orphan"), refused)
    hooks["on_drop"](a_goal("late"), "the queue is full")
    assert [(event, s is sender, kw["goal"].name, kw["reason"]) for event, s, kw in calls] == [
        ("failed", True, "orphan", "HTTP 404: no pageview"),
        ("dropped", True, "late", "the queue is full"),
    ]


def test_the_sender_is_held_weakly() -> None:
    signal_set, signals = a_set()
    register(signal_set)
    senders: list[object] = []
    signals["goal_dropped"].connect(lambda s, **kw: senders.append(s), weak=False)
    sender = Sender()
    hooks = signalled_hooks(sender)
    del sender
    gc.collect()
    hooks["on_drop"](a_goal(), "the tracker closed before it was delivered")
    assert senders == [None]  # the hooks did not keep it alive
