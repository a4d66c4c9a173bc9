"""The option table: GoalTracker's signature, TrackerOptions, every adapter and the environment
read it, with one conversion and one wording; the reference page is what it prints today."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from flask import Flask

import goaltrack
from goaltrack import GoalTracker, InvalidConfiguration, TrackerOptions
from goaltrack.asgi import GoalTrackMiddleware
from goaltrack.django.checks import check_settings
from goaltrack.django.conf import OPTION_KEYS, goaltrack_settings
from goaltrack.flask import CONFIG_DEFAULTS, GoalTrack, get_tracker
from goaltrack.options import (
    DEFAULT_PROVIDER,
    ENVIRONMENT_VARIABLES,
    OPTIONS,
    TABLE,
    names,
    reference,
    settings_from_env,
)
from goaltrack.startup import read_configuration
from tests.support import hooks as hooks_for_tests
from tests.support.paths import REPO

KEY = "df_options_tests_key_0123456789"
REFERENCE_PAGE = REPO / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def closing() -> Iterator[list[GoalTracker]]:
    made: list[GoalTracker] = []
    yield made
    for tracker in made:
        tracker.close(5)


async def no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("not called")


# -- one list of names, defaults and types --------------------------------------------------------


def test_goaltracker_signature_is_the_table() -> None:
    parameters = inspect.signature(GoalTracker).parameters
    in_table = names("account", "tracker")

    assert list(parameters) == list(in_table)
    for name, parameter in parameters.items():
        option = OPTIONS[name]
        assert parameter.default == option.default, name
        assert parameter.annotation == option.type, name
    assert parameters["api_key"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert parameters["provider"].default == DEFAULT_PROVIDER


def test_configure_and_from_env_take_goaltrackers_arguments() -> None:
    expected = list(inspect.signature(GoalTracker).parameters.values())
    assert list(inspect.signature(goaltrack.configure).parameters.values()) == expected
    assert list(inspect.signature(GoalTracker.from_env).parameters.values()) == expected


def test_tracker_options_fields_are_the_tables_tracker_options() -> None:
    fields = dataclasses.fields(TrackerOptions)
    assert [f.name for f in fields] == list(names("tracker"))
    assert {f.name: f.type for f in fields} == {n: OPTIONS[n].type for n in names("tracker")}
    # No second list of defaults: TrackerOptions takes the table's.
    assert all(f.default is dataclasses.MISSING for f in fields)
    built = TrackerOptions.from_options({"max_retries": 2})
    assert built.max_retries == 2
    assert built.timeout == OPTIONS["timeout"].default


def test_every_option_has_its_name_in_every_entry_point() -> None:
    for option in TABLE:
        assert option.env == f"GOALTRACK_{option.name.upper()}"
        assert ENVIRONMENT_VARIABLES[option.env] == option.name
        assert OPTION_KEYS[option.name.upper()] == option.name  # Django
        assert CONFIG_DEFAULTS[option.env] == option.default  # Flask
        assert option.doc
        assert option.type
    middleware = inspect.signature(GoalTrackMiddleware).parameters
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in middleware.values())


def test_the_reference_page_is_what_the_table_prints_today() -> None:
    assert REFERENCE_PAGE.read_text(encoding="utf-8") == reference(), (
        "docs/configuration.md is stale: python -m goaltrack.options > docs/configuration.md"
    )
    for option in TABLE:
        assert f"### `{option.name}`" in reference()


# -- every option from the environment, converted alike -------------------------------------------

#: option -> (the variable's value, what the option reads)
FROM_STRINGS: dict[str, tuple[str, object]] = {
    "api_key": (KEY, KEY),
    "provider": ("flowsery", "flowsery"),
    "api_url": ("http://127.0.0.1:9", "http://127.0.0.1:9"),
    "website_id": ("site_1", "site_1"),
    "mode": ("sync", "sync"),
    "max_queue_size": ("50", 50),
    "max_in_flight": ("2", 2),
    "delivery_process": ("off", False),
    "serverless": ("no", False),
    "max_retries": ("3", 3),
    "backoff_base": ("0.25", 0.25),
    "backoff_max": ("7", 7.0),
    "give_up_after": ("120", 120.0),
    "probe_interval_max": ("0.5", 0.5),
    "refused_probe_interval_max": ("30", 30.0),
    "refusal_give_up": ("600", 600.0),
    "timeout": ("2.5", 2.5),
    "shutdown_timeout": ("1", 1.0),
    "sync_deadline": ("4", 4.0),
    "flush_at_exit": ("off", False),
    "truncate_metadata": ("yes", True),
    "proxy": ("http://127.0.0.1:3128", "http://127.0.0.1:3128"),
    "http_client": ("tests.support.hooks:recording_client", hooks_for_tests.recording_client),
    "before_send": ("tests.support.hooks:without_email", hooks_for_tests.without_email),
    "outbox": ("/tmp/goaltrack-options-test.sqlite3", "/tmp/goaltrack-options-test.sqlite3"),
    "outbox_max_goals": ("10", 10),
    "outbox_max_age": ("60", 60.0),
    "celery_app": (
        "tests.support.celery_app:app",
        "tests.support.celery_app:app",
    ),  # Celery's import
    "celery_queue": ("goals", "goals"),
    "on_delivery": ("tests.support.hooks:without_email", hooks_for_tests.without_email),
    "on_failure": ("tests.support.hooks:without_email", hooks_for_tests.without_email),
    "on_drop": ("tests.support.hooks:without_email", hooks_for_tests.without_email),
    "strict": ("false", False),
    "debug": ("1", True),
    "skip_bots": ("no", False),
    "flush_at_request_end": ("0.5", 0.5),
    "tracking_id": ("dfid_options", "dfid_options"),
    "domain": ("example.com", "example.com"),
    "script_proxy": ("on", True),
    "script_proxy_prefix": ("/_gt", "/_gt"),
    "trusted_proxies": ("10.0.0.1, 172.16.0.0/12", ("10.0.0.1/32", "172.16.0.0/12")),
}


def test_every_option_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(FROM_STRINGS) == set(OPTIONS)
    for name, (text, _) in FROM_STRINGS.items():
        monkeypatch.setenv(OPTIONS[name].env, text)

    settings = read_configuration({}).settings
    read = {
        **settings.tracker_kwargs,
        **settings.hooks,
        "skip_bots": settings.skip_bots,
        "flush_at_request_end": settings.flush_at_request_end,
        "tracking_id": settings.tracking_id,
        "domain": settings.domain,
        "script_proxy": settings.script_proxy,
        "script_proxy_prefix": settings.script_proxy_prefix,
        "trusted_proxies": settings.trusted_proxies,
    }

    assert read == {name: value for name, (_, value) in FROM_STRINGS.items()}
    # GoalTracker.from_env / configure: the same, but the adapters' own options.
    expected = {n: v for n, (_, v) in FROM_STRINGS.items() if n in names("account", "tracker")}
    assert settings_from_env() == expected


def test_a_bad_value_reads_the_same_from_every_entry_point(
    monkeypatch: pytest.MonkeyPatch, closing: list[GoalTracker]
) -> None:
    wording = "must be an int, not 'many'"

    monkeypatch.setenv("GOALTRACK_MAX_RETRIES", "many")
    with pytest.raises(InvalidConfiguration, match=f"GOALTRACK_MAX_RETRIES {wording}"):
        GoalTracker.from_env(KEY)
    with pytest.raises(InvalidConfiguration, match=f"GOALTRACK_MAX_RETRIES {wording}"):
        goaltrack.configure(KEY)
    monkeypatch.delenv("GOALTRACK_MAX_RETRIES")

    app = Flask("options_bad_value")
    app.config.update(TESTING=True, GOALTRACK_API_KEY=KEY, GOALTRACK_MAX_RETRIES="many")
    with pytest.raises(InvalidConfiguration, match=f"GOALTRACK_MAX_RETRIES {wording}"):
        GoalTrack(app)

    with override_settings(GOALTRACK={"API_KEY": KEY, "MAX_RETRIES": "many"}):
        messages = [m.msg for m in check_settings() if m.id == "goaltrack.E101"]
    assert [m for m in messages if f"MAX_RETRIES {wording}" in m], messages

    middleware = GoalTrackMiddleware(no_app, api_key=KEY, max_retries="many")
    closing.append(middleware.tracker)
    assert f"max_retries {wording}" in str(middleware.tracker.error)  # type: ignore[attr-defined]


def test_the_adapters_own_options_come_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALTRACK_SKIP_BOTS", "off")
    monkeypatch.setenv("GOALTRACK_FLUSH_AT_REQUEST_END", "1.5")

    assert GoalTrackMiddleware(no_app).skip_bots is False
    assert GoalTrackMiddleware(no_app, skip_bots=True).skip_bots is True  # given wins
    with override_settings(GOALTRACK={}):
        assert goaltrack_settings.skip_bots is False
        assert goaltrack_settings.flush_at_request_end == 1.5
    with override_settings(GOALTRACK={"SKIP_BOTS": True}):
        assert goaltrack_settings.skip_bots is True
    goaltrack_settings.reset()  # read again without the variables by the next test


# -- the checks, from the table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": 0}, "max_in_flight must be at least 1"),
        ({"timeout": -1}, "timeout must not be negative"),
        ({"probe_interval_max": 0}, "probe_interval_max must be more than 0 seconds"),
        ({"strict": 2}, "strict must be True, False or None"),
        ({"mode": "sync", "outbox": "/tmp/x.sqlite3"}, "outbox is for the background mode"),
        ({"proxy": "http://127.0.0.1:3128", "http_client": dict}, "proxy is for the default"),
    ],
)
def test_the_tables_checks_refuse_what_cannot_work(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfiguration, match=message):
        GoalTracker(KEY, flush_at_exit=False, **options)
    configuration = read_configuration({"api_key": KEY, **options}, environment=False)
    assert [p.id for p in configuration.errors] == ["goaltrack.E101"]
    assert message in str(configuration.errors[0])


# -- Flask keeps what it read in its extension state ----------------------------------------------


def test_init_app_leaves_the_apps_config_as_the_app_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOALTRACK_MODE", "disabled")
    app = Flask("options_no_write_back")
    app.config.update(GOALTRACK_API_KEY=KEY, GOALTRACK_MAX_RETRIES="3")
    before = dict(app.config)
    GoalTrack(app, timeout=2.0)
    try:
        assert dict(app.config) == before
        tracker = get_tracker(app)
        assert (tracker.mode, tracker.options.max_retries, tracker.options.timeout) == (
            "disabled",
            3,
            2.0,
        )
        runner = app.test_cli_runner()
        result = runner.invoke(args=["goaltrack", "check", "--offline"])
        assert "mode:        disabled" in result.output  # the check reads what init_app read
        assert KEY not in result.output
    finally:
        get_tracker(app).close(5)
