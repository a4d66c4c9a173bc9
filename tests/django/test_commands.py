"""The management commands: goaltrack_check and goaltrack_send, against the fake API."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.support import DATAFAST_KEY, goaltrack_setting

pytestmark = pytest.mark.usefixtures("clean_environment")


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, no_color=True)
    return out.getvalue()


def run_failing(name: str, *args: str) -> tuple[str, str]:
    out = StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(name, *args, stdout=out, no_color=True)
    return out.getvalue(), str(excinfo.value)


def test_check_ok(fake_api: FakeAPIServer) -> None:
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        output = run("goaltrack_check")
    assert "provider:    datafast" in output
    assert "API key:     set" in output
    assert "OK: no problems found" in output
    assert "reachable and accepted the key" in output
    assert "ready to deliver goals" in output
    assert DATAFAST_KEY not in output
    assert fake_api.goals == []  # the probe records nothing


def test_check_a_refused_key(fake_api: FakeAPIServer) -> None:
    fake_api.state.revoke_key(DATAFAST_KEY)
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        output, error = run_failing("goaltrack_check")
    assert "FAILED" in output
    assert "401" in output
    assert "not ready" in error
    assert DATAFAST_KEY not in output + error


def test_check_an_unreachable_api() -> None:
    setting = {"API_KEY": "df_x", "API_URL": "http://127.0.0.1:9", "PROVIDER": "datafast"}
    with override_settings(GOALTRACK=setting):
        output, _ = run_failing("goaltrack_check", "--timeout", "2")
    assert "not reachable" in output


def test_check_bad_settings_do_not_contact_the_api() -> None:
    with override_settings(GOALTRACK={"API_KEY": "df_x", "APIURL": "x", "PROVIDER": "nope"}):
        output, _ = run_failing("goaltrack_check")
    assert "goaltrack.E002" in output
    assert "goaltrack.W100" in output
    assert "did you mean 'API_URL'?" in output
    assert "not contacted: fix the settings first" in output


def test_check_without_a_key_fails() -> None:
    with override_settings(GOALTRACK={}):
        output, _ = run_failing("goaltrack_check", "--offline")
    assert "API key:     not set" in output
    assert "goaltrack.W001" in output
    assert "not contacted (--offline)" in output


def test_check_offline(fake_api: FakeAPIServer) -> None:
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        assert "not contacted (--offline)" in run("goaltrack_check", "--offline")


def test_send(fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        output = run(
            "goaltrack_send", "signup", "--visitor-id", visitor_id, "--metadata", "plan=pro"
        )
    assert "delivered goal 'signup' to datafast (HTTP 200, event id" in output
    [goal] = fake_api.goals  # sent before the command returned
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "pro"},
    )


def test_send_a_payment(fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        output = run(
            "goaltrack_send",
            "--amount",
            "0",
            "--currency",
            "EUR",
            "--transaction-id",
            "sub_trial",
            "--visitor-id",
            visitor_id,
            "--free-trial",
        )
    assert "delivered payment 'sub_trial' (0 EUR) to datafast (HTTP 200)" in output
    [payment] = fake_api.payments
    assert (payment["transaction_id"], payment["free_trial"]) == ("sub_trial", True)


def test_send_refused_by_the_api(fake_api: FakeAPIServer) -> None:
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        _, error = run_failing(
            "goaltrack_send", "signup", "--visitor-id", "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21"
        )
    assert "not delivered to datafast: HTTP 404" in error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Not Valid!", "--visitor-id", "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21"], "invalid goal"),
        (["signup"], "invalid goal: datafast needs the visitor id"),
        (["signup", "--metadata", "novalue"], "KEY=VALUE"),
    ],
)
def test_send_bad_input(fake_api: FakeAPIServer, args: list[str], message: str) -> None:
    with override_settings(GOALTRACK=goaltrack_setting(fake_api)):
        _, error = run_failing("goaltrack_send", *args)
    assert message in error


@pytest.mark.parametrize(
    ("setting", "message"),
    [({}, "no API key"), ({"API_KEY": "df_x", "PROVIDER": "nope"}, "invalid GOALTRACK setting")],
)
def test_send_bad_settings(setting: dict[str, Any], message: str) -> None:
    with override_settings(GOALTRACK=setting):
        _, error = run_failing("goaltrack_send", "signup", "--visitor-id", "x")
    assert message in error


def test_goaltrack_outbox_status_and_missing_outbox(fake_api: FakeAPIServer, tmp_path: Any) -> None:
    path = str(tmp_path / "goals.sqlite3")
    with override_settings(GOALTRACK=goaltrack_setting(fake_api, OUTBOX=path)):
        out = run("goaltrack_outbox", "status")
        assert f"outbox:       {path}" in out
        assert "waiting:      0" in out
        assert "dead letters: 0" in out
    with pytest.raises(CommandError, match="no outbox at"):
        call_command("goaltrack_outbox", "retry", "--path", str(tmp_path / "absent.sqlite3"))
