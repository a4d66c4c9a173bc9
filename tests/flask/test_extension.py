"""The Flask extension's set-up: configuration, errors at init_app, two apps, and the CLI."""

from __future__ import annotations

import pytest
from flask import Flask, request

import goaltrack
from goaltrack.flask import CONFIG_DEFAULTS, GoalTrack, get_tracker, track_goal
from goaltrack.options import OPTIONS
from goaltrack.testing.server import FakeAPIServer
from tests.support.flask_apps import new_app as configured_app
from tests.support.keys import DATAFAST_KEY, FLOWSERY_KEY

BROWSER = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126"}


# -- configuration ----------------------------------------------------------------------------


def test_config_defaults_are_set_and_the_tracker_is_the_apps_own(apps: list[Flask]) -> None:
    app = configured_app(apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_MAX_RETRIES="3")
    GoalTrack(app, mode="sync", timeout=2.0)

    tracker = app.extensions["goaltrack"]
    assert isinstance(tracker, goaltrack.GoalTracker)
    assert tracker is not goaltrack.get_tracker()
    assert tracker.provider.name == "datafast"
    assert tracker.mode == "sync"
    assert tracker.options.timeout == 2.0
    assert tracker.options.max_retries == 3  # strings from the environment are converted
    assert app.config["GOALTRACK_MAX_RETRIES"] == "3"  # the config stays as the app set it
    assert "GOALTRACK_SKIP_BOTS" not in app.config
    assert app.extensions["goaltrack.adapter"].skip_bots is True
    assert set(CONFIG_DEFAULTS) == {f"GOALTRACK_{name.upper()}" for name in OPTIONS}
    assert DATAFAST_KEY not in repr(tracker)


def test_no_key_means_validated_but_not_sent(apps: list[Flask]) -> None:
    app = configured_app(apps)
    GoalTrack(app)

    assert get_tracker(app).mode == "disabled"
    with app.test_request_context("/", headers={"Cookie": "a=b", **BROWSER}):
        assert track_goal(request, "signup") is False  # no visitor cookie
        with pytest.raises(goaltrack.InvalidGoal):
            track_goal(request, "Bad Name!")


@pytest.mark.parametrize(
    ("config", "problem_id"),
    [
        ({"GOALTRACK_PROVIDER": "plausible"}, "goaltrack.E002"),
        ({"GOALTRACK_API_KEY": "dft_account_token_123"}, "goaltrack.E003"),
        (
            {"GOALTRACK_API_KEY": DATAFAST_KEY, "GOALTRACK_API_URL": "http://analytics.example"},
            "goaltrack.E004",
        ),
        (
            {"GOALTRACK_API_KEY": "not_a_flow_key", "GOALTRACK_PROVIDER": "flowsery"},
            "goaltrack.E005",
        ),
        ({"GOALTRACK_API_KEY": "df_key with spaces"}, "goaltrack.E006"),
    ],
)
def test_bad_configuration_raises_at_init_app_in_testing_mode(
    apps: list[Flask], config: dict[str, str], problem_id: str
) -> None:
    # Development (debug or testing): the app refuses to start. (Production: test_setup_*.py.)
    app = configured_app(apps, TESTING=True, **config)

    with pytest.raises(goaltrack.InvalidConfiguration) as raised:
        GoalTrack().init_app(app)

    assert problem_id in str(raised.value)
    assert "goaltrack" not in app.extensions
    key = config.get("GOALTRACK_API_KEY")
    if key:
        assert key not in str(raised.value)


def test_bad_option_values_and_names(apps: list[Flask]) -> None:
    with pytest.raises(goaltrack.InvalidConfiguration, match="GOALTRACK_SKIP_BOTS"):
        GoalTrack(configured_app(apps, TESTING=True, GOALTRACK_SKIP_BOTS="sometimes"))
    with pytest.raises(goaltrack.InvalidConfiguration, match="mode"):
        GoalTrack(configured_app(apps, TESTING=True, GOALTRACK_MODE="eventually"))
    with pytest.raises(TypeError, match=r"unknown GoalTrack option.*api_kye"):
        GoalTrack(api_kye=DATAFAST_KEY)


def test_init_app_refuses_to_register_twice(apps: list[Flask]) -> None:
    app = configured_app(apps, GOALTRACK_API_KEY=DATAFAST_KEY)
    GoalTrack(app)

    with pytest.raises(RuntimeError, match="already registered"):
        GoalTrack().init_app(app)


def test_helpers_say_what_is_missing(apps: list[Flask]) -> None:
    app = configured_app(apps)

    with app.test_request_context("/"), pytest.raises(RuntimeError, match="did you call"):
        track_goal(request, "signup")
    with pytest.raises(RuntimeError, match="app context"):
        get_tracker()


def test_two_apps_in_one_process_keep_their_own_provider_and_key(
    apps: list[Flask], fake_api: FakeAPIServer
) -> None:
    shared = GoalTrack()
    datafast_app = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    flowsery_app = configured_app(
        apps,
        GOALTRACK_API_KEY=FLOWSERY_KEY,
        GOALTRACK_PROVIDER="flowsery",
        GOALTRACK_API_URL=fake_api.api_url("flowsery"),
    )
    for app in (datafast_app, flowsery_app):
        shared.init_app(app)

        @app.post("/signup")
        @track_goal("signup")
        def signup() -> str:
            return "ok"

    datafast_visitor = fake_api.add_pageview("datafast")
    datafast_client = datafast_app.test_client()
    datafast_client.set_cookie("datafast_visitor_id", datafast_visitor)
    flowsery_client = flowsery_app.test_client()
    flowsery_client.set_cookie("_fs_vid", "fs-visitor-1")
    flowsery_client.set_cookie("_fs_sid", "fs-session-1")
    datafast_client.post("/signup", headers=BROWSER)
    flowsery_client.post("/signup", headers=BROWSER)

    goals = sorted(fake_api.wait_for_goals(2), key=lambda goal: goal["provider"])
    assert [(g["provider"], g["visitor_id"], g["session_id"]) for g in goals] == [
        ("datafast", datafast_visitor, None),
        ("flowsery", "fs-visitor-1", "fs-session-1"),
    ]
    assert goals[0]["key_hint"] != goals[1]["key_hint"]


# -- command line -----------------------------------------------------------------------------


def test_cli_check_reports_a_working_configuration(
    apps: list[Flask], fake_api: FakeAPIServer
) -> None:
    app = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    GoalTrack(app)

    result = app.test_cli_runner().invoke(args=["goaltrack", "check"])

    assert result.exit_code == 0, result.output
    assert "provider:    datafast" in result.output
    assert "accepted the key" in result.output
    assert DATAFAST_KEY not in result.output
    assert fake_api.goals == []


def test_cli_check_fails_for_a_refused_key_or_no_key(
    apps: list[Flask], fake_api: FakeAPIServer
) -> None:
    refused = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    GoalTrack(refused)
    fake_api.state.revoke_key(DATAFAST_KEY)
    keyless = configured_app(apps)
    GoalTrack(keyless)

    refused_result = refused.test_cli_runner().invoke(args=["goaltrack", "check"])
    keyless_result = keyless.test_cli_runner().invoke(args=["goaltrack", "check"])

    assert refused_result.exit_code == 1
    assert "refused the key" in refused_result.output
    assert DATAFAST_KEY not in refused_result.output
    assert keyless_result.exit_code == 1
    assert "goaltrack.W001" in keyless_result.output


def test_cli_send_delivers_one_payment(apps: list[Flask], fake_api: FakeAPIServer) -> None:
    app = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    GoalTrack(app)
    result = app.test_cli_runner().invoke(
        args=[
            *("goaltrack", "send", "--amount", "12", "--currency", "GBP"),
            *("--transaction-id", "ch_flask", "--refunded"),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "delivered payment 'ch_flask' (12 GBP)" in result.output
    [payment] = fake_api.payments
    assert (payment["transaction_id"], payment["refunded"]) == ("ch_flask", True)


def test_cli_send_delivers_one_goal(apps: list[Flask], fake_api: FakeAPIServer) -> None:
    app = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    GoalTrack(app)
    visitor_id = fake_api.add_pageview("datafast")

    result = app.test_cli_runner().invoke(
        args=["goaltrack", "send", "cli_test", "--visitor", visitor_id, "--metadata", "plan=pro"]
    )

    assert result.exit_code == 0, result.output
    assert "delivered" in result.output
    [goal] = fake_api.goals
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "cli_test",
        visitor_id,
        {"plan": "pro"},
    )


def test_cli_send_reports_refusals_and_bad_input(
    apps: list[Flask], fake_api: FakeAPIServer
) -> None:
    app = configured_app(
        apps, GOALTRACK_API_KEY=DATAFAST_KEY, GOALTRACK_API_URL=fake_api.api_url("datafast")
    )
    GoalTrack(app)
    runner = app.test_cli_runner()
    unknown_visitor = "7d1f6c2e-8a4b-4c3d-9e5f-0a1b2c3d4e5f"  # no pageview: DataFast says 404

    refused = runner.invoke(args=["goaltrack", "send", "cli_test", "--visitor", unknown_visitor])
    no_visitor = runner.invoke(args=["goaltrack", "send", "cli_test"])
    bad_pair = runner.invoke(
        args=["goaltrack", "send", "cli_test", "--visitor", unknown_visitor, "--metadata", "x"]
    )

    assert refused.exit_code == 1
    assert "not delivered to datafast: HTTP 404" in refused.output
    assert no_visitor.exit_code == 2  # bad input, as in every front end
    assert "datafast needs the visitor id" in no_visitor.output
    assert bad_pair.exit_code == 2
    assert "KEY=VALUE" in bad_pair.output
    assert fake_api.goals == []
