"""System checks, the tracker built from settings, override_settings and the misconfigured site."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.checks import Error, Warning, run_checks
from django.test import Client, override_settings

from goaltrack import get_tracker
from goaltrack.django.checks import check_settings
from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.support import BROWSER_UA, goaltrack_setting

pytestmark = pytest.mark.usefixtures("clean_environment")


def ids(setting: Any) -> list[str]:
    with override_settings(GOALTRACK=setting):
        return [message.id or "" for message in check_settings()]


def test_a_good_setting_has_no_problems(fake_api: FakeAPIServer) -> None:
    assert ids(goaltrack_setting(fake_api)) == []
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        assert [m for m in run_checks() if (m.id or "").startswith("goaltrack.")] == []


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"PROVIDER": "datafast"}, ["goaltrack.W001"]),
        ({"API_KEY": "df_x", "PROVIDER": "plausible"}, ["goaltrack.E002"]),
        ({"API_KEY": "dft_account_token"}, ["goaltrack.E003"]),
        ({"API_KEY": "df_x", "API_URL": "http://analytics.example.com"}, ["goaltrack.E004"]),
        ({"API_KEY": "df_x", "PROVIDER": "flowsery"}, ["goaltrack.E005"]),
        ({"API_KEY": "df_x", "MODE": "fast"}, ["goaltrack.E101"]),
        ({"API_KEY": "df_x", "FLUSH_AT_REQUEST_END": "soon"}, ["goaltrack.E101"]),
        ({"API_KEY": "df_x", "AUTH_GOALS": {"user_signed_in": "login"}}, ["goaltrack.E102"]),
        ({"API_KEY": "df_x", "AUTH_GOALS": {"user_logged_in": "Log In!"}}, ["goaltrack.E102"]),
        ({"API_KEY": "df_x", "AUTH_GOALS": "login"}, ["goaltrack.E102"]),
        ("df_x", ["goaltrack.E100"]),
    ],
)
def test_problems(setting: Any, expected: list[str]) -> None:
    assert ids(setting) == expected


@pytest.mark.parametrize(
    ("name", "message", "hint"),
    [
        ("GOALTRAK", "settings.GOALTRAK is not read by goaltrack: did you mean GOALTRACK?", ""),
        ("GOAL_TRACK", "did you mean GOALTRACK?", "rename GOAL_TRACK to GOALTRACK"),
        ("GOALTRACKER", "did you mean GOALTRACK?", ""),
        ("GOALTRACK_API_KEY", "settings.GOALTRACK_API_KEY is not read", '{"API_KEY": ...}'),
    ],
)
def test_a_setting_that_looks_like_goaltrack_is_reported(
    name: str, message: str, hint: str
) -> None:
    with override_settings(**{name: {"API_KEY": "df_x"}}), override_settings(GOALTRACK={}):
        messages = check_settings()
    lookalikes = [m for m in messages if m.id == "goaltrack.W101"]
    assert len(lookalikes) == 1
    assert isinstance(lookalikes[0], Warning)
    assert message in lookalikes[0].msg
    assert hint in (lookalikes[0].hint or "")
    assert "df_x" not in lookalikes[0].msg + (lookalikes[0].hint or "")
    # The key in the misspelled setting was not read: the real one still lacks it.
    assert "goaltrack.W001" in [m.id for m in messages]


def test_settings_unlike_goaltrack_are_left_alone() -> None:
    with override_settings(GOALS={"x": 1}, TRACKING=True, GOALTRACK={"API_KEY": "df_x"}):
        assert [m.id for m in check_settings()] == []


def test_a_misspelled_key_gets_a_hint() -> None:
    with override_settings(GOALTRACK={"API_KEY": "df_x", "APIKEY": "df_y", "WEBSIT_ID": "w"}):
        messages = check_settings()
    assert [m.id for m in messages] == ["goaltrack.W100", "goaltrack.W100"]
    assert all(isinstance(m, Warning) for m in messages)
    assert messages[0].hint == "did you mean 'API_KEY'?"
    assert messages[1].hint == "did you mean 'WEBSITE_ID'?"
    with override_settings(GOALTRACK={"API_KEY": "df_x", "COLOUR": "blue"}):
        assert check_settings()[0].hint == "see goaltrack's settings table"


def test_errors_are_errors_and_never_show_the_key() -> None:
    with override_settings(
        GOALTRACK={
            "API_KEY": "flow_secret_value",
            "PROVIDER": "datafast",
            "API_URL": "http://example.com",
        }
    ):
        messages = check_settings()
    assert messages
    assert all(isinstance(m, Error) for m in messages)
    assert "secret_value" not in repr([(m.msg, m.hint) for m in messages])


def test_environment_fills_in_what_the_setting_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", "df_from_env")
    assert ids({"PROVIDER": "datafast"}) == []


def test_override_settings_rebuilds_the_tracker(fake_api: FakeAPIServer) -> None:
    before = get_tracker()
    with override_settings(GOALTRACK=goaltrack_setting(fake_api, "flowsery")):
        inside = get_tracker()
        assert inside is not before
        assert inside.provider.name == "flowsery"
        assert inside.api_url == fake_api.api_url("flowsery")
        client = Client(HTTP_USER_AGENT=BROWSER_UA)
        client.cookies["_fs_vid"] = "visitor_1"
        assert client.get("/helper/").json() == {"queued": True}
        assert fake_api.wait_for_goals(1)[0]["provider"] == "flowsery"
    after = get_tracker()
    assert after.provider.name == "datafast"
    assert after.mode == "disabled"  # the test settings' default


def test_an_invalid_setting_disables_the_tracker_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="goaltrack"),
        override_settings(
            GOALTRACK={
                "API_KEY": "df_secret_key",
                "API_URL": "http://example.com",
                "PROVIDER": "faurya",
            }
        ),
    ):
        tracker = get_tracker()
        assert (tracker.mode, tracker.provider.name) == ("disabled", "faurya")
        client = Client(HTTP_USER_AGENT=BROWSER_UA)
        client.cookies["faurya_visitor_id"] = "visitor_1"
        assert client.get("/helper/").status_code == 200  # the site keeps working
    # Logged once, with the check's id and hint (the wording of goaltrack.startup).
    assert "the GOALTRACK setting cannot work: goaltrack.E004" in caplog.text
    assert caplog.text.count("goaltrack.E004") == 1
    assert "df_secret_key" not in caplog.text


def test_repr_never_shows_the_key(fake_api: FakeAPIServer) -> None:
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        assert "df_goaltrack_tests_key" not in repr(get_tracker())
