"""``goaltrack.startup``: reading a configuration, and the one rule for one that cannot work.

The rule as each piece applies it, in process: :func:`read_configuration` (the environment
filling in, conversions, every problem with its id, never an exception), :func:`build_tracker`
in production (logged once, a disabled stand-in; an unusable outbox: memory delivery) and in
development (the stand-in raises at tracking calls), the process-wide ``get_tracker()``, the
ASGI middleware's constructor and Django's tracker. Over real servers:
``tests/contract/test_setup_errors.py``; Flask: ``tests/flask/test_config.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

import goaltrack
from goaltrack import InvalidConfiguration, InvalidGoal
from goaltrack import tracker as tracker_module
from goaltrack.asgi import GoalTrackMiddleware
from goaltrack.django.checks import check_settings
from goaltrack.startup import (
    OUTBOX_PROBLEM,
    MisconfiguredTracker,
    build_tracker,
    read_configuration,
    tracker_from_env,
)
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY

WRONG_PROVIDER_KEY = "flow_startup_tests_key_0123456789"
VISITOR = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"


pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.fixture
def closing() -> Iterator[list[goaltrack.GoalTracker]]:
    made: list[goaltrack.GoalTracker] = []
    yield made
    for tracker in made:
        tracker.close(5)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "goaltrack" and r.levelname == "ERROR"
    ]


async def no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("not called")


# -- reading -------------------------------------------------------------------------------------


def test_the_environment_fills_in_what_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", KEY)
    monkeypatch.setenv("GOALTRACK_PROVIDER", "flowsery")
    monkeypatch.setenv("GOALTRACK_STRICT", "false")
    monkeypatch.setenv("GOALTRACK_DEBUG", "1")

    configuration = read_configuration({"provider": "datafast", "max_retries": "3"})

    kwargs = configuration.settings.tracker_kwargs
    assert kwargs["api_key"] == KEY
    assert kwargs["provider"] == "datafast"  # given wins over the environment
    assert kwargs["max_retries"] == 3
    assert kwargs["strict"] is False  # GOALTRACK_STRICT, converted like every boolean
    assert kwargs["debug"] is True
    assert configuration.problems == ()


def test_bad_values_are_problems_with_the_id_and_name_never_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALTRACK_DEBUG", "loud")

    configuration = read_configuration(
        {"api_key": WRONG_PROVIDER_KEY, "skip_bots": "sometimes", "max_retry": 3},
        label=lambda name: f"GOALTRACK_{name.upper()}",
    )

    ids = [p.id for p in configuration.errors]
    text = " ".join(map(str, configuration.errors))
    assert ids.count("goaltrack.E101") == 3  # the two values and the unknown name
    assert "goaltrack.E005" in ids
    assert "GOALTRACK_DEBUG must be a bool" in text  # the variable, as the user wrote it
    assert "GOALTRACK_SKIP_BOTS" in text
    assert "GOALTRACK_MAX_RETRY" in text
    assert WRONG_PROVIDER_KEY not in text
    assert configuration.settings.tracker_kwargs["api_key"] == WRONG_PROVIDER_KEY  # the rest read


def test_development_makes_goals_strict_unless_strict_is_given() -> None:
    assert read_configuration({}, development=True).settings.tracker_kwargs["strict"] is True
    given = read_configuration({"strict": "no"}, development=True)
    assert given.settings.tracker_kwargs["strict"] is False
    assert "strict" not in read_configuration({}).settings.tracker_kwargs


# -- production ----------------------------------------------------------------------------------


def test_production_logs_once_and_disables_tracking(
    caplog: pytest.LogCaptureFixture, closing: list[goaltrack.GoalTracker]
) -> None:
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        setup = build_tracker(
            {"api_key": WRONG_PROVIDER_KEY},
            development=False,
            source="the test's configuration",
            check_command="goaltrack check",
        )
        closing.append(setup.tracker)
        tracker = setup.tracker
        assert isinstance(tracker, MisconfiguredTracker)
        assert tracker.mode == "disabled"
        assert tracker.track("signup", visitor_id=VISITOR) is False  # validated, not sent
        with pytest.raises(InvalidGoal):
            tracker.track("Not A Goal!")

    assert [p.id for p in setup.problems] == ["goaltrack.E005"]
    logged = [r.getMessage() for r in caplog.records if r.name == "goaltrack"]
    assert len(logged) == 1  # one ERROR, and no "no API key" warning beside it
    assert caplog.records[0].levelname == "ERROR"
    assert "goaltrack.E005" in logged[0]
    assert "HINT: this looks like a flowsery key" in logged[0]
    assert "goaltrack check" in logged[0]
    assert WRONG_PROVIDER_KEY not in caplog.text


@pytest.mark.parametrize("kind", ["a file where a directory should be", "a directory"])
def test_an_unusable_outbox_logs_its_path_and_delivers_from_memory(
    kind: str,
    tmp_path: Path,
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    closing: list[goaltrack.GoalTracker],
) -> None:
    if kind == "a directory":
        outbox = tmp_path / "outbox.sqlite3"
        outbox.mkdir()  # sqlite3 cannot open a directory: sqlite3.OperationalError
    else:
        (tmp_path / "file").write_text("")
        outbox = tmp_path / "file" / "outbox.sqlite3"  # mkdir fails: an OSError
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        setup = build_tracker(
            {"api_key": KEY, "api_url": fake_api.api_url("datafast"), "outbox": str(outbox)},
            development=False,
            source="the test's configuration",
            check_command="goaltrack check",
        )
        closing.append(setup.tracker)
        for _ in range(2):
            assert setup.tracker.track("signup", visitor_id=visitor) is True  # never raises
        assert setup.tracker.flush(10)

    assert [g["name"] for g in fake_api.goals] == ["signup", "signup"]
    assert [p.id for p in setup.problems] == [OUTBOX_PROBLEM]
    (logged,) = errors_logged(caplog)
    assert str(outbox) in logged
    assert "goaltrack.E008" in logged
    assert "delivered from memory" in logged


# -- development ---------------------------------------------------------------------------------


def test_development_raises_at_every_tracking_call_with_the_id(
    caplog: pytest.LogCaptureFixture, closing: list[goaltrack.GoalTracker]
) -> None:
    setup = build_tracker(
        {"api_key": WRONG_PROVIDER_KEY},
        development=True,
        source="the test's configuration",
        check_command="goaltrack check",
    )
    closing.append(setup.tracker)
    for call in (
        lambda: setup.tracker.track("signup", visitor_id=VISITOR),
        lambda: setup.tracker.track_visitor(None, "signup"),
    ):
        with pytest.raises(InvalidConfiguration, match=r"goaltrack\.E005.*HINT") as raised:
            call()
        assert WRONG_PROVIDER_KEY not in str(raised.value)
    assert setup.error is not None
    assert "the test's configuration cannot work: goaltrack.E005" in str(setup.error)


def test_development_is_loud_about_the_outbox_too(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    outbox.mkdir()
    setup = build_tracker(
        {"api_key": KEY, "outbox": str(outbox)},
        development=True,
        source="the test's configuration",
        check_command="goaltrack check",
    )
    with pytest.raises(InvalidConfiguration, match=r"goaltrack\.E008"):
        setup.tracker.track("signup", visitor_id=VISITOR)


# -- the process-wide tracker --------------------------------------------------------------------


@pytest.mark.parametrize("under_plugin", [False, True])
def test_get_tracker_never_raises_for_the_environment(
    under_plugin: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", WRONG_PROVIDER_KEY)
    monkeypatch.setattr(tracker_module, "_process_tracker", None)
    monkeypatch.setattr(tracker_module, "strict_by_default", under_plugin)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        tracker = goaltrack.get_tracker()
        assert goaltrack.get_tracker() is tracker
    assert isinstance(tracker, MisconfiguredTracker)
    assert len(errors_logged(caplog)) == 1
    assert "the GOALTRACK_* environment variables cannot work" in errors_logged(caplog)[0]
    if under_plugin:  # goaltrack's pytest plugin is development: loud at the call
        with pytest.raises(InvalidConfiguration, match=r"goaltrack\.E005"):
            goaltrack.track("signup", visitor_id=VISITOR)
    else:
        assert goaltrack.track("signup", visitor_id=VISITOR) is False


def test_goaltrack_debug_is_a_log_not_development_for_the_process_wide_tracker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", WRONG_PROVIDER_KEY)
    monkeypatch.setenv("GOALTRACK_DEBUG", "true")
    monkeypatch.setattr(tracker_module, "strict_by_default", False)
    tracker = tracker_from_env()
    assert isinstance(tracker, MisconfiguredTracker)
    assert not tracker.raises  # debug logs in production must not raise into requests
    assert not tracker.strict


# -- the ASGI middleware and Django --------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_the_middleware_is_built_whatever_the_configuration(
    debug: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        middleware = GoalTrackMiddleware(
            no_app, api_key=WRONG_PROVIDER_KEY, provider="datafast", debug=debug
        )
        GoalTrackMiddleware(no_app, skip_bots="sometimes")
    assert isinstance(middleware.tracker, MisconfiguredTracker)
    assert middleware.tracker.raises is debug
    assert middleware.debug is debug
    logged = errors_logged(caplog)
    assert len(logged) == 2
    assert "goaltrack.E005" in logged[0]
    assert "goaltrack.E101" in logged[1]
    assert "skip_bots" in logged[1]


def test_middleware_debug_makes_goals_strict_unless_strict_is_given(
    closing: list[goaltrack.GoalTracker],
) -> None:
    debug = GoalTrackMiddleware(no_app, api_key=KEY, mode="disabled", debug=True)
    relaxed = GoalTrackMiddleware(no_app, api_key=KEY, mode="disabled", debug=True, strict=False)
    production = GoalTrackMiddleware(no_app, api_key=KEY, mode="disabled")
    closing.extend([debug.tracker, relaxed.tracker, production.tracker])
    assert debug.tracker.options.strict is True
    assert relaxed.tracker.options.strict is False
    assert production.tracker.options.strict is None


def test_django_debug_makes_the_process_tracker_loud_and_strict() -> None:
    with (
        override_settings(DEBUG=True, GOALTRACK={"API_KEY": WRONG_PROVIDER_KEY}),
        pytest.raises(InvalidConfiguration, match=r"GOALTRACK setting.*goaltrack\.E005"),
    ):
        goaltrack.track("signup", visitor_id=VISITOR)
    with override_settings(DEBUG=True, GOALTRACK={"API_KEY": KEY, "MODE": "disabled"}):
        assert goaltrack.get_tracker().options.strict is True
    with override_settings(DEBUG=False, GOALTRACK={"API_KEY": KEY, "MODE": "disabled"}):
        assert goaltrack.get_tracker().options.strict is None


def test_django_checks_report_an_outbox_the_tracker_could_not_open(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    outbox.mkdir()
    with override_settings(GOALTRACK={"API_KEY": KEY, "OUTBOX": str(outbox)}):
        messages = [m for m in check_settings() if m.id == OUTBOX_PROBLEM]
        assert goaltrack.get_tracker().mode == "background"  # from memory
    assert len(messages) == 1
    assert str(outbox) in messages[0].msg
    with override_settings(GOALTRACK={"API_KEY": KEY, "MODE": "disabled"}):
        assert [m for m in check_settings() if m.id == OUTBOX_PROBLEM] == []


def test_middleware_debug_with_a_tracker_of_yours_refuses_to_start_on_its_problems() -> None:
    setup = build_tracker(
        {"api_key": WRONG_PROVIDER_KEY},
        development=True,
        source="your tracker's configuration",
        check_command="goaltrack check",
    )
    middleware = GoalTrackMiddleware(no_app, tracker=setup.tracker, debug=True)
    refused = middleware._startup()
    assert refused is not None
    assert "goaltrack.E005" in refused
    assert GoalTrackMiddleware(no_app, tracker=setup.tracker)._startup() is None  # production
