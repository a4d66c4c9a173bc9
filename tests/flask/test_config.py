"""Flask's set-up: the ``GOALTRACK_*`` environment variables, and the setup-error rule.

``init_app`` reads the variables the other adapters read (the app's config wins, then the
options given to ``GoalTrack``); a configuration that cannot work raises in debug or testing
mode and is logged once (tracking disabled) otherwise; development makes goals strict. The same
app under gunicorn and ``flask goaltrack check``: ``tests/contract/test_setup_errors.py``.
"""

from __future__ import annotations

import logging

import pytest
from flask import Flask

import goaltrack
from goaltrack.flask import GoalTrack, get_tracker
from goaltrack.startup import MisconfiguredTracker
from goaltrack.testing.server import FakeAPIServer
from tests.support.flask_apps import new_app
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.keys import FLOWSERY_KEY

VISITOR = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"


pytestmark = pytest.mark.usefixtures("clean_environment")


def test_the_environment_configures_the_app(
    apps: list[Flask], fake_api: FakeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", FLOWSERY_KEY)
    monkeypatch.setenv("GOALTRACK_PROVIDER", "flowsery")
    monkeypatch.setenv("GOALTRACK_API_URL", fake_api.api_url("flowsery"))
    monkeypatch.setenv("GOALTRACK_MODE", "sync")
    app = new_app(apps)
    GoalTrack(app)

    tracker = get_tracker(app)
    assert (tracker.provider.name, tracker.mode) == ("flowsery", "sync")
    assert "GOALTRACK_PROVIDER" not in app.config  # read, never written into the config
    assert tracker.track("signup", visitor_id="vid_1") is True  # delivered (sync)
    assert [g["name"] for g in fake_api.goals] == ["signup"]


def test_the_apps_config_wins_then_the_extensions_options(
    apps: list[Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", FLOWSERY_KEY)
    monkeypatch.setenv("GOALTRACK_PROVIDER", "flowsery")
    monkeypatch.setenv("GOALTRACK_MODE", "background")
    monkeypatch.setenv("GOALTRACK_STRICT", "true")
    app = new_app(apps, GOALTRACK_API_KEY=KEY, GOALTRACK_PROVIDER="datafast")
    GoalTrack(app, mode="disabled")

    tracker = get_tracker(app)
    assert tracker.provider.name == "datafast"  # the config, over the environment
    assert tracker.mode == "disabled"  # GoalTrack(mode=...), over the environment
    assert tracker.options.strict is True  # the environment, where nothing else says
    assert app.config["GOALTRACK_API_KEY"] == KEY


def test_production_logs_once_and_serves_without_tracking(
    apps: list[Flask], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", FLOWSERY_KEY)  # a Flowsery key for DataFast
    app = new_app(apps)
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        GoalTrack(app)
    tracker = get_tracker(app)

    assert isinstance(tracker, MisconfiguredTracker)
    assert tracker.track("signup", visitor_id=VISITOR) is False
    logged = [r for r in caplog.records if r.name == "goaltrack" and r.levelno >= logging.WARNING]
    assert [r.levelname for r in logged] == ["ERROR"]  # no "no API key" warning beside it
    assert "the app's GOALTRACK_* config cannot work: goaltrack.E005" in logged[0].getMessage()
    assert "flask goaltrack check" in logged[0].getMessage()
    assert FLOWSERY_KEY not in caplog.text


@pytest.mark.parametrize("mode", ["DEBUG", "TESTING"])
def test_development_refuses_to_start(
    apps: list[Flask], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", FLOWSERY_KEY)
    app = new_app(apps, **{mode: True})

    with pytest.raises(goaltrack.InvalidConfiguration, match=r"goaltrack\.E005.*HINT") as raised:
        GoalTrack(app)
    assert FLOWSERY_KEY not in str(raised.value)
    assert "goaltrack" not in app.extensions


def test_development_makes_goals_strict_unless_strict_is_set(apps: list[Flask]) -> None:
    testing = new_app(apps, TESTING=True, GOALTRACK_API_KEY=KEY, GOALTRACK_MODE="disabled")
    relaxed = new_app(
        apps,
        TESTING=True,
        GOALTRACK_API_KEY=KEY,
        GOALTRACK_MODE="disabled",
        GOALTRACK_STRICT="false",
    )
    production = new_app(apps, GOALTRACK_API_KEY=KEY, GOALTRACK_MODE="disabled")
    for app in (testing, relaxed, production):
        GoalTrack(app)
    assert get_tracker(testing).options.strict is True
    assert get_tracker(relaxed).options.strict is False
    assert get_tracker(production).options.strict is None
