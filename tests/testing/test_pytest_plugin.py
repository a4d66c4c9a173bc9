"""The pytest plugin and capture helpers that users' own test suites rely on."""

from __future__ import annotations

from decimal import Decimal

import pytest

from goaltrack import GoalTracker, InvalidGoal, InvalidPayment, Payment
from goaltrack.testing import CapturedGoals, capture_goals
from goaltrack.testing.server import FakeAPIServer

VISITOR = "a3ab2331-989f-4cfa-91c6-2461c9e3c6bd"


def test_goaltrack_goals_fixture_captures_instead_of_sending(
    goaltrack_goals: CapturedGoals, goaltrack_fake_api: FakeAPIServer
) -> None:
    tracker = GoalTracker("df_k", api_url=goaltrack_fake_api.api_url("datafast"))
    tracker.track("Sign Up", visitor_id=VISITOR, metadata={"plan": "pro"})
    assert goaltrack_goals.names == ["sign_up"]
    assert goaltrack_goals[0].metadata == {"plan": "pro"}
    assert tracker.flush(5)
    assert goaltrack_fake_api.requests == []  # captured goals are not sent
    tracker.close(1)


def test_capture_still_validates_and_ends_with_the_block() -> None:
    tracker = GoalTracker(None)
    with capture_goals() as goals:
        with pytest.raises(InvalidGoal):
            tracker.track("identify", visitor_id=VISITOR)
        tracker.track("ok", visitor_id=VISITOR)
    tracker.track("after", visitor_id=VISITOR)
    assert goals.names == ["ok"]


def test_goaltrack_fake_api_fixture_is_emptied_per_test(goaltrack_fake_api: FakeAPIServer) -> None:
    assert goaltrack_fake_api.goals == []
    goaltrack_fake_api.add_pageview("datafast", VISITOR)
    tracker = GoalTracker("df_k", api_url=goaltrack_fake_api.api_url("datafast"))
    tracker.track("first", visitor_id=VISITOR)
    assert tracker.flush(5)
    assert [g["name"] for g in goaltrack_fake_api.goals] == ["first"]
    tracker.close(1)


def test_goaltrack_payments_fixture_captures_payments_instead_of_sending(
    goaltrack_payments: list[Payment], goaltrack_fake_api: FakeAPIServer
) -> None:
    tracker = GoalTracker("df_k", api_url=goaltrack_fake_api.api_url("datafast"))
    assert tracker.track_payment(Decimal("9.99"), "eur", "ch_captured", visitor_id=VISITOR)
    with pytest.raises(InvalidPayment):  # validated as in production, strict under pytest
        tracker.track_payment(-1, "EUR", "ch_negative")
    assert [(p.transaction_id, p.amount, p.currency) for p in goaltrack_payments] == [
        ("ch_captured", 9.99, "EUR")
    ]
    assert tracker.flush(5)
    assert goaltrack_fake_api.requests == []
    tracker.close(1)


def test_capture_goals_keeps_payments_apart(goaltrack_goals: CapturedGoals) -> None:
    tracker = GoalTracker(None)
    tracker.track("signup", visitor_id=VISITOR)
    tracker.track_payment(5, "USD", "ch_apart")
    assert goaltrack_goals.names == ["signup"]
    assert goaltrack_goals.transaction_ids == ["ch_apart"]
