"""The pytest plugin and capture helpers that users' own test suites rely on."""

from __future__ import annotations

import pytest

from goaltrack import GoalTracker, InvalidGoal
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
