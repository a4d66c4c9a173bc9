"""Security properties, each checked against the real thing (fake API over HTTP, real commands).

- The API key never shows: not in any log record (DEBUG, across every kind of failure), repr,
  exception message, nor the output of ``goaltrack check``, ``manage.py goaltrack_check`` and
  ``flask goaltrack check``.
- ``http://`` is refused for anything but loopback hosts.
- HTML and script are removed from metadata values before they leave.
- Cookie values that are not well-formed ids are never forwarded.
- A redirect from the API is not followed: the key never reaches the redirect's target.
"""

from __future__ import annotations

import http.server
import logging
import os
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goaltrack import (
    GoalTracker,
    InvalidConfiguration,
    InvalidGoal,
    configuration_problems,
    visitor_from_cookies,
)
from goaltrack.testing.server import FakeAPIServer
from tests.support.paths import EXAMPLES, REPO
from tests.support.ports import free_port

SECRET = "df_SECRETsecret0123456789abcdef"
SECRET_TAIL = SECRET[3:]  # the key without its well-known prefix must not show either


def assert_no_secret(text: str) -> None:
    assert SECRET_TAIL not in text, text


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        if record.exc_info:
            assert_no_secret("".join(traceback.format_exception(*record.exc_info)))


def test_the_key_never_shows_in_logs_reprs_or_errors_across_failures(
    fake_api: FakeAPIServer, logs: pytest.LogCaptureFixture
) -> None:
    failures: list[str] = []
    tracker = GoalTracker(
        SECRET,
        api_url=fake_api.api_url("datafast"),
        max_retries=2,
        backoff_base=0.01,
        refusal_give_up=0.5,
        on_failure=lambda goal, result: failures.append(result.reason),
    )
    try:
        assert_no_secret(repr(tracker))
        assert_no_secret(repr(tracker.__dict__))
        known = fake_api.add_pageview("datafast")
        fake_api.set_faults(fail_next=1, reset_next=1)  # a 503 and a dropped connection, retried
        tracker.track("retried", visitor_id=known)
        tracker.track("unknown_visitor", visitor_id=str(uuid.uuid4()))  # 404, final
        assert tracker.flush(timeout=20)
        # 401: the goal is held while the key is refused, and fails after refusal_give_up.
        fake_api.state.revoke_key(SECRET)
        tracker.track("revoked", visitor_id=known)
        assert tracker.flush(timeout=20)
        with pytest.raises(InvalidGoal) as invalid:
            tracker.track("Not A Valid Name!", visitor_id=known)
        assert_no_secret(str(invalid.value))
    finally:
        tracker.close(timeout=5)
    assert [g["name"] for g in fake_api.goals] == ["retried"]
    assert len(failures) == 2
    for reason in failures:
        assert_no_secret(reason)
    assert logs.records  # the failures were logged: there was something to check

    down = GoalTracker(SECRET, api_url=f"http://127.0.0.1:{free_port()}", max_retries=0)
    try:
        down.track("refused", visitor_id=known)
        assert down.flush(timeout=10)
        assert down.stats.failed == 1
    finally:
        down.close(timeout=5)

    for url in ("http://analytics.example.com", "ftp://127.0.0.1", "not a url"):
        with pytest.raises(InvalidConfiguration) as refused:
            GoalTracker(SECRET, api_url=url)
        assert_no_secret(str(refused.value))
        assert_no_secret("".join(traceback.format_exception(refused.value)))


@pytest.mark.parametrize(
    "url",
    [
        "http://analytics.example.com",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.example.com",
        "http://localhost.example.com",
        "http://[::ffff:8.8.8.8]",
    ],
)
def test_plain_http_is_refused_for_non_loopback_hosts(url: str) -> None:
    with pytest.raises(InvalidConfiguration, match="plain http"):
        GoalTracker(SECRET, api_url=url)
    problems = configuration_problems(api_key=SECRET, provider="datafast", api_url=url)
    assert [p.id for p in problems] == ["goaltrack.E004"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    GoalTracker(SECRET, api_url=url, mode="disabled").close()
    assert configuration_problems(api_key=SECRET, provider="datafast", api_url=url) == []


def test_html_and_script_are_removed_from_metadata(fake_api: FakeAPIServer) -> None:
    tracker = GoalTracker(SECRET, api_url=fake_api.api_url("datafast"), mode="sync")
    try:
        tracker.track(
            "signup",
            visitor_id=fake_api.add_pageview("datafast"),
            metadata={
                "company": "Acme <script>alert(document.cookie)</script>Corp",
                "link": '<a href="javascript:alert(1)" onclick="x()">site</a>',
                "img": "<img src=x onerror=alert(1)>",
                "quote": 'Tom & "Jerry\'s" <3',
            },
        )
    finally:
        tracker.close(timeout=5)
    [goal] = fake_api.goals
    assert goal["metadata"] == {
        "company": "Acme Corp",
        "link": "site",
        "img": "",
        "quote": "Tom  Jerrys 3",
    }


@pytest.mark.parametrize(
    "header",
    [
        "datafast_visitor_id=<script>alert(1)</script>",
        "datafast_visitor_id=1234",
        "datafast_visitor_id=../../etc/passwd",
        "datafast_visitor_id=2d1f36fc-4a3b-4fc9-b898-49e8eb2c2dc1\r\nX-Injected: 1",
        "datafast_visitor_id=d8e48807-cbcf-42de-b16d-52342294154cx",
        f"datafast_visitor_id={'a' * 5000}",
    ],
)
def test_malformed_cookie_ids_are_never_forwarded(header: str) -> None:
    assert visitor_from_cookies(header, "datafast") is None
    assert visitor_from_cookies(header.encode("latin-1"), "datafast") is None
    assert (
        visitor_from_cookies({"datafast_visitor_id": header.split("=", 1)[1]}, "datafast") is None
    )


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with 307 to ``redirect_to`` (if set) and remembers the headers."""

    redirect_to: str | None = None
    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers))
        self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to + self.path)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(redirect_to: str | None) -> tuple[http.server.ThreadingHTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"redirect_to": redirect_to, "seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_redirects_from_the_api_are_not_followed_with_the_key() -> None:
    elsewhere, seen_elsewhere = _serve(None)
    redirecting, seen_redirecting = _serve(f"http://127.0.0.1:{elsewhere.server_port}")
    failures: list[str] = []
    tracker = GoalTracker(
        SECRET,
        api_url=f"http://127.0.0.1:{redirecting.server_port}/datafast",
        on_failure=lambda goal, result: failures.append(result.reason),
    )
    try:
        tracker.track("signup", visitor_id=str(uuid.uuid4()))
        assert tracker.flush(timeout=10)
    finally:
        tracker.close(timeout=5)
        redirecting.shutdown()
        elsewhere.shutdown()
    assert len(seen_redirecting) == 1  # one attempt: a redirect is final, not retried
    assert seen_redirecting[0]["Authorization"] == f"Bearer {SECRET}"
    assert seen_elsewhere == []
    [reason] = failures
    assert "307" in reason
    assert "redirects are not followed" in reason


def _run(command: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)]), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def test_check_commands_never_print_the_key(fake_api: FakeAPIServer) -> None:
    env = {
        "GOALTRACK_API_KEY": SECRET,
        "GOALTRACK_PROVIDER": "datafast",
        "GOALTRACK_API_URL": fake_api.api_url("datafast"),
    }
    outputs = {
        "goaltrack check": _run([sys.executable, "-m", "goaltrack.cli", "check"], REPO, **env),
        "manage.py goaltrack_check": _run(
            [sys.executable, "manage.py", "goaltrack_check"],
            EXAMPLES / "django_shop",
            DJANGO_SETTINGS_MODULE="shop.settings",
            **env,
        ),
        "flask goaltrack check": _run(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "example_projects.flask_blog.app",
                "goaltrack",
                "check",
            ],
            REPO,
            **env,
        ),
    }
    for command, output in outputs.items():
        assert "reachable and accepted the key" in output, (command, output)
        assert_no_secret(output)
    # And with a key the API refuses, the refusal is explained without the key.
    fake_api.state.revoke_key(SECRET)
    refused = _run([sys.executable, "-m", "goaltrack.cli", "check"], REPO, **env)
    assert "401" in refused or "refused" in refused, refused
    assert_no_secret(refused)
