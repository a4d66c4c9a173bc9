"""The debug switch: one log line per goal tracked and per outcome, never the API key.

``debug=True`` (``GOALTRACK_DEBUG=1``, Django's ``GOALTRACK["DEBUG"]``, Flask's
``GOALTRACK_DEBUG``, the ASGI middleware's ``debug=``) against the fake API over real HTTP.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from django.test import override_settings
from flask import Flask

import goaltrack
from goaltrack import GoalTracker, InvalidConfiguration
from goaltrack.asgi import GoalTrackMiddleware
from goaltrack.flask import GoalTrack
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY

UNKNOWN_VISITOR = "e3ab2331-989f-4cfa-91c6-2461c9e3c6bd"  # no pageview: the API answers 404


@pytest.fixture
def goaltrack_logger_level() -> Iterator[None]:
    """``debug=True`` sets the goaltrack logger's level: restore it for the next tests."""
    logger = logging.getLogger("goaltrack")
    level = logger.level
    yield
    logger.setLevel(level)


def debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "goaltrack"]


@pytest.mark.usefixtures("goaltrack_logger_level")
def test_debug_logs_each_goal_tracked_retried_and_settled_without_the_key(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.DEBUG, logger="goaltrack"):
        tracker = GoalTracker(
            KEY,
            api_url=fake_api.api_url("datafast"),
            debug=True,
            backoff_base=0.01,
            flush_at_exit=False,
        )
        try:
            fake_api.set_faults(fail_next=1, fail_status=503)
            assert tracker.track("signup", {"plan": "pro"}, visitor_id=visitor)
            assert tracker.flush(10)
            assert tracker.track("purchase", {"amount": 29}, visitor_id=UNKNOWN_VISITOR)
            assert tracker.flush(10)
        finally:
            tracker.close(5)
    lines = debug_lines(caplog)
    signup = f"datafast goal 'signup' for visitor '{visitor}' metadata {{'plan': 'pro'}}"
    assert f"goaltrack debug: tracked {signup} (mode background)" in lines
    assert any(line.startswith(f"goaltrack debug: retrying {signup} in ") for line in lines)
    assert any("HTTP 503" in line for line in lines if "retrying" in line)
    delivered = [line for line in lines if line.startswith(f"goaltrack debug: delivered {signup}")]
    assert len(delivered) == 1
    assert ": HTTP 200, event id " in delivered[0]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1
    assert "'purchase'" in failed[0].getMessage()
    assert "HTTP 404" in failed[0].getMessage()
    assert "metadata {'amount': '29'}" in failed[0].getMessage()
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


def test_without_debug_no_goal_details_are_logged(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = fake_api.add_pageview("datafast")
    with (
        caplog.at_level(logging.DEBUG, logger="goaltrack"),
        GoalTracker(KEY, api_url=fake_api.api_url("datafast"), flush_at_exit=False) as tracker,
    ):
        assert tracker.track("signup", {"plan": "secret_plan"}, visitor_id=visitor)
        assert tracker.flush(10)
    assert fake_api.goals[0]["name"] == "signup"
    assert not [line for line in debug_lines(caplog) if line.startswith("goaltrack debug:")]
    assert "secret_plan" not in caplog.text


def test_debug_without_logging_configured_prints_to_stderr(fake_api: FakeAPIServer) -> None:
    code = """
        import os
        import goaltrack

        tracker = goaltrack.GoalTracker(
            os.environ["KEY"], api_url=os.environ["FAKE_API"], mode="sync", debug=True
        )
        print("sent" if tracker.track("signup", {"plan": "pro"}, visitor_id=os.environ["VISITOR"])
              else "not sent")
    """
    env = {
        **os.environ,
        "KEY": KEY,
        "FAKE_API": fake_api.api_url("datafast"),
        "VISITOR": fake_api.add_pageview("datafast"),
        "PYTHONWARNINGS": "error",
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == "sent\n"
    assert "DEBUG goaltrack debug: tracked datafast goal 'signup'" in result.stderr
    assert "metadata {'plan': 'pro'} (mode sync)" in result.stderr
    assert "DEBUG goaltrack debug: delivered datafast goal 'signup'" in result.stderr
    assert KEY not in result.stderr


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("0", False)])
def test_goaltrack_debug_environment_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("GOALTRACK_DEBUG", value)
    monkeypatch.setattr(goaltrack.tracker, "_process_tracker", None)
    monkeypatch.setattr(goaltrack.tracker, "show_debug_log", lambda: None)
    tracker = goaltrack.configure(KEY, mode="disabled")
    try:
        assert tracker.options.debug is expected
    finally:
        tracker.close(1)


def test_a_bad_goaltrack_debug_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_DEBUG", "loud")
    with pytest.raises(InvalidConfiguration, match="GOALTRACK_DEBUG must be a bool, not 'loud'"):
        GoalTracker.from_env(api_key=KEY)
    with pytest.raises(InvalidConfiguration, match="debug must be True or False, not 'yes'"):
        GoalTracker(KEY, debug="yes")


@pytest.mark.usefixtures("goaltrack_logger_level")
def test_each_adapter_has_the_debug_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOALTRACK_DEBUG", raising=False)
    with override_settings(GOALTRACK={"API_KEY": KEY, "DEBUG": True, "MODE": "disabled"}):
        assert goaltrack.get_tracker().options.debug is True
    app = Flask("debug_test")
    app.config.update(GOALTRACK_API_KEY=KEY, GOALTRACK_DEBUG="true", GOALTRACK_MODE="disabled")
    GoalTrack(app)
    assert app.extensions["goaltrack"].options.debug is True
    app.extensions["goaltrack"].close(1)

    async def inner(scope: object, receive: object, send: object) -> None:
        return None

    middleware = GoalTrackMiddleware(inner, api_key=KEY, debug=True, mode="disabled")
    assert middleware.tracker.options.debug is True
    middleware.tracker.close(1)
