"""Invalid goals in the core and on the adapters' non-HTTP paths: strict, or repaired or refused.

Each tracker here sets ``strict`` explicitly: this suite runs under goaltrack's pytest plugin,
which makes trackers strict by default.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from goaltrack import Goal, GoalTracker, InvalidGoal
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY


@pytest.fixture
def make_tracker(fake_api: FakeAPIServer) -> Iterator[Any]:
    trackers: list[GoalTracker] = []

    def make(**options: Any) -> GoalTracker:
        tracker = GoalTracker(
            KEY, provider="datafast", api_url=fake_api.api_url("datafast"), **options
        )
        trackers.append(tracker)
        return tracker

    yield make
    for tracker in trackers:
        tracker.close(5)


def here() -> str:
    """``file:line`` of the caller's next line."""
    frame = inspect.currentframe()
    assert frame is not None
    assert frame.f_back is not None
    return f"{__file__}:{frame.f_back.f_lineno + 1}"


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "goaltrack" and r.levelno == level]


@pytest.mark.parametrize(
    ("name", "metadata", "rule"),
    [
        ("Sign Up!", None, "letters"),
        ("signup", {"Bad Key": "x"}, "keys:"),
        ("signup", {f"k{n}": n for n in range(11)}, "at most 10 keys"),
        ("signup", ["not", "a", "mapping"], "flat object"),
        ("signup", {"nested": {"a": 1}}, "nested objects"),
    ],
    ids=["bad-name", "bad-key", "too-many-keys", "not-a-mapping", "nested-value"],
)
def test_production_track_refuses_counts_and_names_the_callers_line(
    make_tracker: Any,
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    name: str,
    metadata: Any,
    rule: str,
) -> None:
    tracker = make_tracker(strict=False)
    visitor_id = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        location = here()
        assert tracker.track(name, metadata, visitor_id=visitor_id) is False
    assert tracker.stats.invalid == 1
    assert tracker.stats.queued == 0
    [error] = records(caplog, logging.ERROR)
    assert f"(tracked at {location})" in error
    assert rule in error
    assert tracker.flush(10)
    assert fake_api.goals == []


def test_strict_track_raises(make_tracker: Any, fake_api: FakeAPIServer) -> None:
    tracker = make_tracker(strict=True)
    visitor_id = fake_api.add_pageview("datafast")
    with pytest.raises(InvalidGoal):
        tracker.track("Sign Up!", visitor_id=visitor_id)
    with pytest.raises(InvalidGoal):
        tracker.track("signup", {"comment": "x" * 300}, visitor_id=visitor_id)
    with pytest.raises(TypeError):
        tracker.track("signup", visitor_id)  # type: ignore[arg-type]
    assert tracker.stats.invalid == 0


def test_production_cuts_an_overlong_value_counted_as_javascript_does(
    make_tracker: Any, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(strict=False)
    visitor_id = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        location = here()
        assert tracker.track(
            "signup", {"comment": "😀" * 200, "plan": "pro"}, visitor_id=visitor_id
        )
    [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"] == {"comment": "😀" * 127, "plan": "pro"}  # 254 UTF-16 units
    [warning] = records(caplog, logging.WARNING)
    assert "'signup'" in warning
    assert "'comment'" in warning
    assert location in warning
    assert records(caplog, logging.ERROR) == []
    assert tracker.stats.invalid == 0


def test_a_string_as_metadata_is_refused_not_raised_in_production(
    make_tracker: Any, fake_api: FakeAPIServer
) -> None:
    tracker = make_tracker(strict=False)
    visitor_id = fake_api.add_pageview("datafast")
    assert tracker.track("signup", visitor_id) is False  # type: ignore[arg-type]
    assert tracker.track_visitor(None, "signup", "pro") is False  # type: ignore[arg-type]
    assert tracker.stats.invalid == 2


def test_track_visitor_refuses_a_bad_name_even_without_a_visitor(
    make_tracker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make_tracker(strict=False)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert tracker.track_visitor(None, "Sign Up!") is False
    assert tracker.stats.invalid == 1
    assert len(records(caplog, logging.ERROR)) == 1


def test_an_invalid_goal_from_before_send(
    make_tracker: Any, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    def rename(goal: Goal) -> Goal:
        return goal.replace(name="Renamed Badly!")

    def lengthen(goal: Goal) -> Goal:
        return goal.replace(metadata={"note": "y" * 300})

    visitor_id = fake_api.add_pageview("datafast")
    with pytest.raises(InvalidGoal, match="before_send returned an invalid goal"):
        make_tracker(strict=True, before_send=rename).track("signup", visitor_id=visitor_id)

    tracker = make_tracker(strict=False, before_send=rename)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert tracker.track("signup", visitor_id=visitor_id) is False
    assert tracker.stats.invalid == 1
    [error] = records(caplog, logging.ERROR)
    assert "before_send returned an invalid goal" in error

    repaired = make_tracker(strict=False, before_send=lengthen)
    assert repaired.track("signup", visitor_id=visitor_id) is True
    [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"] == {"note": "y" * 255}


def test_debug_says_why_a_goal_was_not_sent(
    make_tracker: Any, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    filtering = make_tracker(debug=True, before_send=lambda goal: None)
    disabled = make_tracker(debug=True, mode="disabled")
    with caplog.at_level(logging.DEBUG, logger="goaltrack"):
        assert filtering.track("signup", visitor_id=visitor_id) is False
        assert disabled.track("signup", visitor_id=visitor_id) is False
        assert filtering.track_visitor(None, "signup") is False
    assert "before_send filtered out goal 'signup'" in caplog.text
    assert "goaltrack is disabled; not sending" in caplog.text
    assert "goal 'signup' not sent: the visitor has no datafast_visitor_id cookie" in caplog.text


def test_a_decorators_invalid_metadata_names_the_decorator_in_production(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    from flask import Flask

    from goaltrack.flask import GoalTrack, get_tracker, track_goal

    app = Flask("invalid_goals_core")
    app.config.update(
        GOALTRACK_API_KEY=KEY,
        GOALTRACK_API_URL=fake_api.api_url("datafast"),
        GOALTRACK_STRICT=False,
    )
    GoalTrack(app)

    @app.post("/upgrade")
    @track_goal("upgrade", metadata=lambda request: {"Plan Name": request.form["plan"]})
    def upgrade() -> str:
        return "upgraded"

    # The line of @track_goal(...): the one after the first decorator's.
    decorator_line = f"{__file__}:{upgrade.__wrapped__.__code__.co_firstlineno + 1}"  # type: ignore[attr-defined]
    client = app.test_client()
    client.set_cookie("datafast_visitor_id", fake_api.add_pageview("datafast"))
    try:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            assert client.post("/upgrade", data={"plan": "pro"}).status_code == 200
        tracker = get_tracker(app)
        assert tracker.stats.invalid == 1
        [error] = records(caplog, logging.ERROR)
        assert f"(tracked at {decorator_line})" in error
    finally:
        get_tracker(app).close(5)


@pytest.mark.django_db(transaction=True)
def test_django_on_commit_repairs_once_and_sends_at_commit(
    fake_api: FakeAPIServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from django.db import transaction
    from django.test import RequestFactory

    from goaltrack.django import track_goal
    from tests.support.django_app.support import goaltrack_setting

    settings.GOALTRACK = goaltrack_setting(fake_api, STRICT=False)
    visitor_id = fake_api.add_pageview("datafast")
    request = RequestFactory().post("/", HTTP_COOKIE=f"datafast_visitor_id={visitor_id}")
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        with transaction.atomic():
            assert track_goal(request, "signup", {"bio": "z" * 300}, on_commit=True) is True
            assert track_goal(request, "Sign Up!", on_commit=True) is False
            assert fake_api.goals == []
        [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"] == {"bio": "z" * 255}
    assert len(records(caplog, logging.WARNING)) == 1
    assert len(records(caplog, logging.ERROR)) == 1


def test_the_debug_log_never_makes_a_tracker_strict(
    make_tracker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``debug=True`` (``GOALTRACK_DEBUG``) is a log switch: turned on in production to see what
    is sent, it must not turn a bad goal into an exception in a request."""
    from goaltrack import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "strict_by_default", False)  # as outside pytest
    tracker = make_tracker(debug=True)
    assert tracker.strict is False
    with caplog.at_level(logging.DEBUG, logger="goaltrack"):
        assert tracker.track("Sign Up!", visitor_id="0b7a4c36-5d1e-4a8f-9c2b-3e4f5a6b7c8d") is False
    assert tracker.stats.invalid == 1
    assert make_tracker(debug=True, strict=True).strict is True
