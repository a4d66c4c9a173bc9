"""``before_send``: the last look at a goal in the caller's thread, to change it or drop it.

Over real HTTP to the fake API: the README's PII scrub (the visitor's email never reaches the
API), None filters a goal out (counted as ``filtered``, not as dropped), a raising hook is logged
with the goal's name and the goal goes unchanged, a goal the hook broke is an InvalidGoal at the
call site, ``capture_goals`` sees what would be sent, and the dotted path from Django, Flask and
ASGI settings.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import goaltrack
from goaltrack import Goal, GoalTracker, InvalidGoal
from goaltrack.testing import capture_goals
from goaltrack.testing.server import FakeAPIServer
from tests.support.hooks import without_email
from tests.support.keys import DATAFAST_KEY as KEY


def tracker_for(fake_api: FakeAPIServer, **options: Any) -> GoalTracker:
    return GoalTracker(KEY, api_url=fake_api.api_url("datafast"), flush_at_exit=False, **options)


def test_the_readme_scrub_keeps_the_email_from_the_api(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    with tracker_for(fake_api, before_send=without_email) as tracker:
        tracker.track("signup", visitor_id=visitor, metadata={"plan": "pro", "email": "a@b.co"})
        assert tracker.flush(10)
    [goal] = fake_api.goals
    assert goal["metadata"] == {"plan": "pro"}
    assert "a@b.co" not in str(fake_api.requests)


def test_none_filters_the_goal_out_counted_apart_from_drops(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")

    def only_purchases(goal: Goal) -> Goal | None:
        return goal if goal.name == "purchase" else None

    with tracker_for(fake_api, before_send=only_purchases) as tracker:
        tracker.track("pageview_like", visitor_id=visitor)
        assert tracker.track_visitor((visitor, None), "scroll") is False
        tracker.track("purchase", visitor_id=visitor)
        assert tracker.flush(10)
        stats = tracker.stats
    assert (stats.filtered, stats.dropped, stats.queued, stats.delivered) == (2, 0, 1, 1)
    assert [g["name"] for g in fake_api.goals] == ["purchase"]


def test_a_raising_hook_is_logged_and_the_goal_goes_unchanged(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(goal: Goal) -> Goal:
        raise KeyError("plan")

    visitor = fake_api.add_pageview("datafast")
    with tracker_for(fake_api, before_send=broken) as tracker:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            tracker.track("signup", visitor_id=visitor, metadata={"plan": "pro"})
        assert tracker.flush(10)
    assert "before_send raised for goal 'signup'; sent unchanged" in caplog.text
    assert fake_api.goals[0]["metadata"] == {"plan": "pro"}


def test_a_goal_the_hook_broke_is_an_invalid_goal_at_the_call_site(
    fake_api: FakeAPIServer,
) -> None:
    def breaking(goal: Goal) -> Goal:
        return goal.replace(metadata={"Not A Key": "x"})

    with tracker_for(fake_api, before_send=breaking) as tracker:
        with pytest.raises(
            InvalidGoal,
            match=r"before_send returned an invalid goal: invalid metadata key .Not A Key.",
        ):
            tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
        assert tracker.stats.queued == 0


def test_something_else_than_a_goal_or_none_is_logged_and_the_goal_goes(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with tracker_for(fake_api, before_send=lambda goal: {"name": "x"}) as tracker:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
        assert tracker.flush(10)
    assert "before_send returned dict for goal 'signup', not a Goal or None" in caplog.text
    assert [g["name"] for g in fake_api.goals] == ["signup"]


def test_capture_goals_sees_what_would_be_sent(fake_api: FakeAPIServer) -> None:
    with tracker_for(fake_api, before_send=without_email) as tracker, capture_goals() as goals:
        tracker.track(
            "signup", visitor_id=fake_api.add_pageview("datafast"), metadata={"email": "e"}
        )
    assert [dict(goal.metadata or {}) for goal in goals] == [{}]


def test_the_option_from_each_adapters_settings(fake_api: FakeAPIServer, settings: Any) -> None:
    from flask import Flask
    from starlette.applications import Starlette

    import goaltrack.flask as goaltrack_flask
    from goaltrack.asgi import GoalTrackMiddleware
    from tests.support.django_app.support import goaltrack_setting

    settings.GOALTRACK = goaltrack_setting(
        fake_api, BEFORE_SEND="tests.support.hooks:without_email"
    )
    django_tracker = goaltrack.get_tracker()
    app = Flask(__name__)
    app.config.update(
        GOALTRACK_API_KEY=KEY,
        GOALTRACK_API_URL=fake_api.api_url("datafast"),
        GOALTRACK_BEFORE_SEND="tests.support.hooks.without_email",
        GOALTRACK_FLUSH_AT_EXIT=False,
    )
    goaltrack_flask.GoalTrack(app)
    with app.app_context():
        flask_tracker = goaltrack_flask.get_tracker()
    asgi_tracker = GoalTrackMiddleware(
        Starlette(),
        api_key=KEY,
        api_url=fake_api.api_url("datafast"),
        before_send=without_email,
        flush_at_exit=False,
    ).tracker
    visitor = fake_api.add_pageview("datafast")
    for tracker in (django_tracker, flask_tracker, asgi_tracker):
        tracker.track("signup", visitor_id=visitor, metadata={"email": "a@b.co", "plan": "x"})
        assert tracker.flush(10)
    assert [g["metadata"] for g in fake_api.goals] == [{"plan": "x"}] * 3
    flask_tracker.close(2)
    asgi_tracker.close(2)
