"""The ``goaltrack`` command against the fake API: send, check, and the key never printed."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

import goaltrack
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY


def goaltrack_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "goaltrack.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_delivers_and_prints_the_event_id(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    result = goaltrack_cli(
        "send",
        "Trial Started",
        "--visitor",
        visitor,
        "-m",
        "plan=pro",
        "--api-url",
        fake_api.api_url("datafast"),
        env={"GOALTRACK_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    [goal] = fake_api.goals
    assert (goal["name"], goal["metadata"]) == ("trial_started", {"plan": "pro"})
    assert f"event id {goal['event_id']}" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_send_reports_a_final_failure_with_exit_1(fake_api: FakeAPIServer) -> None:
    result = goaltrack_cli(
        "send",
        "signup",
        "--visitor",
        "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd",
        "--api-url",
        fake_api.api_url("datafast"),
        env={"GOALTRACK_API_KEY": KEY},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    # Said once, by the command: not also by the goaltrack logger.
    assert result.stderr == (
        "error: not delivered to datafast: HTTP 404: visitor has no pageviews on this website\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "identify", "--visitor", "a3ab2331-989f-4cfa-91c6-2461c9e3c6bd"], "reserved"),
        (["send", "signup", "--visitor", "x", "-m", "novalue"], "KEY=VALUE"),
    ],
)
def test_send_refuses_invalid_goals(args: list[str], message: str) -> None:
    result = goaltrack_cli(*args, env={"GOALTRACK_API_KEY": KEY})
    assert result.returncode == 2
    assert message in result.stderr


def test_check_passes_for_a_good_configuration(fake_api: FakeAPIServer) -> None:
    env = {"GOALTRACK_API_KEY": KEY, "GOALTRACK_API_URL": fake_api.api_url("datafast")}
    result = goaltrack_cli("check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    url = fake_api.api_url("datafast") + "/api/v1/goals"
    assert (
        f"  OK: {url} is reachable and accepted the key; it refused the empty test goal "
        "(HTTP 400), as it should, so nothing was recorded\n"
    ) in result.stdout
    assert result.stdout.endswith("goaltrack is ready to deliver goals\n")
    assert KEY not in result.stdout
    assert fake_api.goals == []  # the check records nothing


def test_version_is_the_installed_distributions() -> None:
    result = goaltrack_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"goaltrack {importlib.metadata.version('goaltrack')}\n"
    assert goaltrack.__version__ == importlib.metadata.version("goaltrack")


def test_check_fails_for_a_refused_key(fake_api: FakeAPIServer) -> None:
    fake_api.state.revoke_key(KEY)
    env = {"GOALTRACK_API_KEY": KEY, "GOALTRACK_API_URL": fake_api.api_url("datafast")}
    result = goaltrack_cli("check", env=env)
    assert result.returncode == 1
    assert "refused the key: HTTP 401" in result.stdout
    assert KEY not in result.stdout


def test_check_fails_when_unreachable_and_for_bad_settings() -> None:
    env = {"GOALTRACK_API_KEY": KEY, "GOALTRACK_API_URL": "http://127.0.0.1:9"}
    unreachable = goaltrack_cli("check", "--timeout", "2", env=env)
    assert unreachable.returncode == 1
    assert "not reachable" in unreachable.stdout
    bad = goaltrack_cli("check", env={"GOALTRACK_API_KEY": "dft_token"})
    assert bad.returncode == 1
    assert "goaltrack.E003" in bad.stdout
    assert "dft_token" not in bad.stdout


@pytest.mark.slow
def test_fake_api_subcommand_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "goaltrack.cli", "fake-api", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("listening on ")[1].split()[0]
        response = subprocess.run(
            [sys.executable, "-c", f"import httpx; print(httpx.get('{url}/_fake/goals').text)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert response.stdout.strip() == "[]"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_send_a_payment_and_again_its_duplicate(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    args = (
        "send",
        "--amount",
        "29.90",
        "--currency",
        "usd",
        "--transaction-id",
        "ch_cli",
        "--visitor-id",
        visitor,
        "--email",
        "ada@example.com",
        "--renewal",
        "--api-url",
        fake_api.api_url("datafast"),
    )
    first = goaltrack_cli(*args, env={"GOALTRACK_API_KEY": KEY})
    assert first.returncode == 0, first.stderr
    assert first.stdout == "delivered payment 'ch_cli' (29.9 USD) to datafast (HTTP 200)\n"
    again = goaltrack_cli(*args, env={"GOALTRACK_API_KEY": KEY})
    assert again.returncode == 0, again.stderr
    assert "recorded before: a duplicate" in again.stdout
    [payment] = fake_api.payments
    assert (payment["amount"], payment["currency"], payment["visitor_id"]) == (29.9, "USD", visitor)
    assert (payment["email"], payment["renewal"]) == ("ada@example.com", True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send"], "a goal NAME, or a payment"),
        (["send", "--amount", "5", "--currency", "USD"], "--transaction-id"),
        (["send", "signup", "--amount", "5"], "not both"),
        (["send", "--amount", "five", "--currency", "USD", "--transaction-id", "t"], "--amount"),
        (["send", "--amount", "-5", "--currency", "USD", "--transaction-id", "t"], "negative"),
        (["send", "--amount", "5", "--currency", "dollars", "--transaction-id", "t"], "currency"),
    ],
)
def test_send_refuses_invalid_payments(args: list[str], message: str) -> None:
    result = goaltrack_cli(*args, env={"GOALTRACK_API_KEY": KEY})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
