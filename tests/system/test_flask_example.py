"""The Flask blog example under gunicorn, tracking into the fake API over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.paths import REPO
from tests.support.ports import free_port

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605"
)
BOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
START_TIMEOUT_S = 20.0

pytestmark = pytest.mark.slow


class Blog:
    """A running gunicorn master (started by the fixture) and its URL."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process
        self.output = ""

    def stop(self) -> int:
        """SIGTERM (a graceful stop: workers finish and flush their goals); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.output, _ = self.process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.output, _ = self.process.communicate()
        return self.process.returncode


@pytest.fixture
def blog(fake_api: FakeAPIServer) -> Iterator[Blog]:
    """The example blog served by gunicorn (one worker, two threads), tracking into fake_api."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GOALTRACK_API_KEY": "df_flask_blog_example",
        "GOALTRACK_PROVIDER": "datafast",
        "GOALTRACK_API_URL": fake_api.api_url("datafast"),
        "GOALTRACK_BACKOFF_BASE": "0.05",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "2",
            "--graceful-timeout",
            "10",
            "example_projects.flask_blog.app:create_app()",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Blog(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_serving(running.url, process)
        yield running
    finally:
        running.stop()
    assert "df_flask_blog_example" not in running.output


def wait_until_serving(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling interval of a deadline-bound wait for the port to open
    raise RuntimeError(f"gunicorn did not serve {url} within {START_TIMEOUT_S:g} s")


def test_signup_subscribe_and_login_arrive_as_goals(blog: Blog, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    cookies = {"datafast_visitor_id": visitor_id}
    with httpx.Client(base_url=blog.url, headers={"User-Agent": BROWSER}, cookies=cookies) as web:
        page = web.get("/")
        assert page.status_code == 200
        assert visitor_id in page.text  # the blog saw the visitor the cookie names
        assert (
            web.post("/signup", data={"email": "ann@example.com", "plan": "pro"}).status_code == 302
        )
        assert web.get("/signup").status_code == 200  # the form: no goal
        assert web.post("/signup", data={"email": "not an email"}).status_code == 200  # no goal
        assert web.post("/subscribe", data={"email": "ann@example.com"}).status_code == 302
        assert web.post("/login", data={"username": "ann"}).status_code == 302
    with httpx.Client(base_url=blog.url, headers={"User-Agent": BOT}, cookies=cookies) as bot:
        assert bot.post("/signup", data={"email": "bot@example.com"}).status_code == 302

    fake_api.wait_for_goals(3, timeout=10)
    assert blog.stop() == 0  # the exit flush settles whatever else was tracked (nothing more)
    goals = fake_api.goals
    assert {goal["visitor_id"] for goal in goals} == {visitor_id}
    assert sorted((goal["name"], str(goal["metadata"])) for goal in goals) == [
        ("login", "{'method': 'password', 'role': 'reader'}"),
        ("newsletter_subscribe", "{'list': 'weekly'}"),
        ("signup", "{'plan': 'pro'}"),
    ]


def test_goals_still_queued_at_shutdown_are_delivered(blog: Blog, fake_api: FakeAPIServer) -> None:
    # Slower than the worker's 4 requests in flight can keep up with: most goals are still
    # queued when gunicorn gets SIGTERM.
    fake_api.set_faults(latency_ms=200)
    visitor_id = fake_api.add_pageview("datafast")
    with httpx.Client(
        base_url=blog.url,
        headers={"User-Agent": BROWSER},
        cookies={"datafast_visitor_id": visitor_id},
    ) as web:
        for _ in range(10):
            assert web.post("/subscribe", data={"email": "ann@example.com"}).status_code == 302

    assert blog.stop() == 0
    # Delivered before the worker exited: no waiting needed once gunicorn is gone.
    assert [goal["name"] for goal in fake_api.goals] == ["newsletter_subscribe"] * 10
