"""Payments in the core: the rules (goaltrack.payments), the strict rule, before_send, the
serialized form (goaltrack.items), and what a payment's body is for each provider."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from decimal import Decimal
from typing import Any

import pytest

import goaltrack
from goaltrack import Goal, GoalTracker, InvalidGoal, InvalidPayment, Payment
from goaltrack.items import decode, encode, from_message, to_message
from goaltrack.providers import get_provider
from goaltrack.testing import capture_goals

DATAFAST = get_provider("datafast")
FAURYA = get_provider("faurya")
FLOWSERY = get_provider("flowsery")
VISITOR = "0b7a4c36-5d1e-4a8f-9c2b-3e4f5a6b7c8d"


def test_the_bodies_use_each_providers_field_names() -> None:
    full: dict[str, Any] = {
        "visitor_id": VISITOR,
        "session_id": "fs_s",
        "email": "a@example.com",
        "name": "Ada",
        "customer_id": "cus_1",
        "renewal": True,
        "refunded": True,
    }
    snake = Payment.create(DATAFAST, Decimal("19.99"), "usd", "ch_1", **full, free_trial=False)
    assert snake.body() == {
        "amount": 19.99,
        "currency": "USD",
        "transaction_id": "ch_1",
        "datafast_visitor_id": VISITOR,
        "email": "a@example.com",
        "name": "Ada",
        "customer_id": "cus_1",
        "renewal": True,
        "refunded": True,
        "is_free_trial": False,
    }  # DataFast takes no session id: left out
    assert (
        Payment.create(FAURYA, 5, "EUR", "ch_2", visitor_id="fy_v").body()["faurya_visitor_id"]
        == "fy_v"
    )
    camel = Payment.create(FLOWSERY, 7, "GBP", "ch_3", **full)
    assert camel.body() == {
        "amount": 7,
        "currency": "GBP",
        "transactionId": "ch_3",
        "visitorUid": VISITOR,
        "sessionUid": "fs_s",
        "email": "a@example.com",
        "name": "Ada",
        "customerId": "cus_1",
        "isRenewal": True,
        "isRefund": True,
    }


@pytest.mark.parametrize(
    ("amount", "sent"),
    [
        (Decimal("29.00"), 29),
        (Decimal("0.10"), 0.1),
        (12, 12),
        (12.0, 12),
        (0, 0),
        (Decimal("-0"), 0),
    ],
)
def test_amounts_become_json_numbers(amount: Any, sent: float) -> None:
    body = Payment.create(DATAFAST, amount, "USD", "t").body()
    assert body["amount"] == sent
    assert json.loads(json.dumps(body))["amount"] == sent


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": math.nan}, "amount"),
        ({"amount": math.inf}, "amount"),
        ({"amount": Decimal("NaN")}, "amount"),
        ({"amount": Decimal("1e400")}, "amount"),
        ({"amount": "19.99"}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "dollars"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"transaction_id": ""}, "transaction_id"),
        ({"transaction_id": "   "}, "transaction_id"),
        ({"transaction_id": 42}, "transaction_id"),
        ({"transaction_id": "x" * 256}, "transaction_id"),
        ({"transaction_id": "a\nb"}, "transaction_id"),
        ({"visitor_id": "not-a-uuid"}, "visitor_id"),
        ({"email": "not an email"}, "email"),
        ({"renewal": "yes"}, "renewal"),
        ({"refunded": 1}, "refunded"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": dt.datetime(2026, 1, 1)}, "timestamp"),  # naive
    ],
)
def test_invalid_payments_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args = {"amount": 1, "currency": "USD", "transaction_id": "t", **kwargs}
    with pytest.raises(InvalidPayment) as raised:
        Payment.create(
            DATAFAST,
            args.pop("amount"),
            args.pop("currency"),
            args.pop("transaction_id"),
            **args,
        )
    assert raised.value.field == field
    assert isinstance(raised.value, InvalidGoal)


def test_flowsery_takes_no_free_trial_flag_nor_timestamp() -> None:
    with pytest.raises(InvalidPayment, match="free-trial"):
        Payment.create(FLOWSERY, 0, "USD", "t", free_trial=True)
    with pytest.raises(InvalidPayment, match="timestamp"):
        Payment.create(FLOWSERY, 0, "USD", "t", timestamp="2026-01-01T00:00:00Z")


def test_timestamps_are_sent_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    when = dt.datetime(2026, 1, 31, 13, 0, 0, 250000, tzinfo=paris)
    assert Payment.create(DATAFAST, 1, "USD", "t", timestamp=when).timestamp == (
        "2026-01-31T12:00:00.250Z"
    )
    assert Payment.create(DATAFAST, 1, "USD", "t", timestamp="2026-01-31T12:00:00Z").timestamp == (
        "2026-01-31T12:00:00.000Z"
    )


def test_the_email_is_neither_in_the_error_nor_in_the_repr_nor_in_the_label() -> None:
    with pytest.raises(InvalidPayment) as raised:
        Payment.create(DATAFAST, 1, "USD", "t", email="ada lovelace@example.com")
    assert "lovelace" not in str(raised.value)
    payment = Payment.create(DATAFAST, 1, "USD", "t", email="ada@example.com", name="Ada L")
    for text in (repr(payment), payment.label, payment.describe()):
        assert "ada@example.com" not in text
        assert "Ada L" not in text


def test_strict_raises_at_the_call_site() -> None:
    tracker = GoalTracker("df_test", strict=True, mode="disabled")
    with pytest.raises(InvalidPayment, match="currency"):
        tracker.track_payment(10, "dollars", "ch_1")


def test_production_refuses_counts_and_names_the_callers_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker = GoalTracker("df_test", strict=False, mode="disabled")
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert tracker.track_payment(-5, "USD", "ch_neg") is False
    assert tracker.stats.payments.invalid == 1
    assert tracker.stats.goals.invalid == 0
    [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "invalid payment 'ch_neg' not sent" in error
    assert f"{__file__}:" in error
    assert "negative" in error


def test_before_send_sees_payments_and_its_scrub_is_sent() -> None:
    seen: list[str] = []

    def scrub(item: Goal | Payment) -> Goal | Payment | None:
        seen.append(item.kind)
        if isinstance(item, Payment):
            return item.replace(customer_email=None, customer_name=None)
        return item

    tracker = GoalTracker("df_test", before_send=scrub, mode="disabled")
    with capture_goals() as captured:
        assert tracker.track_payment(9, "USD", "ch_1", email="a@example.com", name="Ada")
        assert tracker.track("signup", visitor_id=VISITOR)
    assert seen == ["payment", "goal"]
    [payment] = captured.payments
    assert (payment.customer_email, payment.customer_name) == (None, None)
    assert captured.names == ["signup"]
    assert captured.transaction_ids == ["ch_1"]


def test_before_send_filtering_a_payment_counts_it_as_a_filtered_payment() -> None:
    tracker = GoalTracker("df_test", before_send=lambda item: None, mode="disabled")
    assert tracker.track_payment(9, "USD", "ch_1") is False
    assert (tracker.stats.payments.filtered, tracker.stats.goals.filtered) == (1, 0)


def test_a_payment_broken_by_before_send_follows_the_strict_rule() -> None:
    def breaks(item: Goal | Payment) -> Goal | Payment | None:
        return item.replace(currency="dollars") if isinstance(item, Payment) else item

    strict = GoalTracker("df_test", before_send=breaks, strict=True, mode="disabled")
    with pytest.raises(InvalidPayment, match="before_send returned an invalid payment"):
        strict.track_payment(9, "USD", "ch_1")
    lenient = GoalTracker("df_test", before_send=breaks, strict=False, mode="disabled")
    assert lenient.track_payment(9, "USD", "ch_1") is False
    assert lenient.stats.payments.invalid == 1


def test_a_goal_and_a_payment_survive_their_serialized_forms() -> None:
    goal = Goal.create(DATAFAST, "signup", visitor_id=VISITOR, metadata={"plan": "pro"})
    payment = Payment.create(
        FLOWSERY, Decimal("9.99"), "eur", "ch_9", visitor_id="v1", session_id="s1", refunded=True
    )
    for item in (goal, payment):
        assert decode(encode(item)) == item
        assert from_message(json.loads(json.dumps(to_message(item)))) == item
    # Goals keep the outbox's list form; a message without a kind is a goal (older messages).
    assert json.loads(encode(goal))[0] == "datafast"
    legacy = {k: v for k, v in to_message(goal).items() if k != "kind"}
    assert from_message(legacy) == goal


def test_the_module_level_call_uses_the_process_tracker() -> None:
    tracker = goaltrack.configure("df_test", mode="disabled")
    try:
        with capture_goals() as captured:
            assert goaltrack.track_payment(Decimal("1.50"), "USD", "ch_module")
    finally:
        tracker.close(2)
        goaltrack.tracker._process_tracker = None
    assert captured.transaction_ids == ["ch_module"]
