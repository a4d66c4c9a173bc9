"""The script proxy of each example project under its real server (Django shop and Flask blog
under gunicorn's sync workers, the FastAPI app under uvicorn), with ``GOALTRACK_SCRIPT_PROXY=1``
and a recording upstream of the test's own standing in for the provider.

A slow provider must not slow the site's other routes (one sync worker: a proxied event that
waited for the provider would hold it); the script is served from the cache while the provider
is down; what reaches the provider has none of the site's cookies or credentials and the
connection's address, not a spoofed ``X-Forwarded-For``; a 10 MB event is refused unread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from goaltrack.script_proxy import REAL_IP_HEADER
from tests.support.browser import BROWSER_UA
from tests.support.examples import RunningExample, serve_example
from tests.support.script_upstream import SCRIPT, Recorder, recording_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

#: A route of each example that has nothing to do with the proxy.
OTHER_ROUTE = {"django": "/login/", "flask": "/healthz", "fastapi": "/demo"}
#: Far above what an app route takes here, far below the provider's 2 s.
OTHER_ROUTE_BOUND_S = 1.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recorder]:
    with recording_upstream() as recorder:
        yield recorder


@pytest.fixture(scope="module", params=["django", "flask", "fastapi"])
def site(request: pytest.FixtureRequest, upstream: Recorder) -> Iterator[RunningExample]:
    environment = {
        "GOALTRACK_SCRIPT_PROXY": "1",
        "GOALTRACK_MODE": "disabled",
        # uvicorn itself takes the client from X-Forwarded-For of a loopback peer by default
        # (--forwarded-allow-ips): here it trusts no one, as gunicorn does, so that the proxy
        # is what decides.
        "FORWARDED_ALLOW_IPS": "192.0.2.1",
    }
    with serve_example(request.param, upstream.url, env=environment) as running:
        yield running


@pytest.fixture
def recorder(upstream: Recorder) -> Recorder:
    upstream.reset()
    return upstream


def test_a_slow_provider_does_not_slow_other_routes(
    site: RunningExample, recorder: Recorder
) -> None:
    recorder.delay = 2.0
    statuses: list[int] = []

    def send_event() -> None:
        response = httpx.post(site.url + "/_goaltrack/events", content=b"{}", timeout=15)
        statuses.append(response.status_code)

    senders = [threading.Thread(target=send_event) for _ in range(4)]
    for sender in senders:
        sender.start()
    wait_until(lambda: recorder.events_arrived == 4, what="four events stalled at the provider")
    latencies = []
    with httpx.Client(base_url=site.url, timeout=10) as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get(OTHER_ROUTE[site.name]).status_code == 200
            latencies.append(time.monotonic() - started)
    for sender in senders:
        sender.join(15)
    assert max(latencies) < OTHER_ROUTE_BOUND_S, latencies
    # Django and Flask answer at once and forward in the background; ASGI relays the answer.
    assert statuses == [200 if site.name == "fastapi" else 202] * 4
    wait_until(lambda: len(recorder.events) == 4, timeout=15, what="the four events forwarded")


def test_the_cached_script_is_served_while_the_provider_is_down(
    site: RunningExample, recorder: Recorder
) -> None:
    script = site.url + "/_goaltrack/script.js"
    assert httpx.get(script).content == SCRIPT
    recorder.failing = True
    response = httpx.get(script)
    assert (response.status_code, response.content) == (200, SCRIPT)


def test_nothing_of_the_site_reaches_the_provider(site: RunningExample, recorder: Recorder) -> None:
    response = httpx.post(
        site.url + "/_goaltrack/events",
        content=b'{"type":"pageview"}',
        headers={
            "Content-Type": "application/json",
            "User-Agent": BROWSER_UA,
            "Cookie": "sessionid=site-secret; csrftoken=site-secret",
            "Authorization": "Bearer site-secret",
            "X-Forwarded-For": "203.0.113.7",  # spoofed: the server trusts no proxy
        },
    )
    assert response.status_code in (200, 202)
    wait_until(lambda: len(recorder.events) == 1, what="the event forwarded")
    [(headers, body)] = recorder.events
    assert body == b'{"type":"pageview"}'
    assert headers["user-agent"] == BROWSER_UA
    assert headers[REAL_IP_HEADER] == "127.0.0.1"
    for private in ("cookie", "authorization", "x-forwarded-for"):
        assert private not in headers
    assert "site-secret" not in repr(headers)


def test_a_10_mb_event_is_refused_unread(site: RunningExample, recorder: Recorder) -> None:
    host, port = site.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /_goaltrack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 10485760\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
    assert httpx.get(site.url + OTHER_ROUTE[site.name]).status_code == 200
    assert recorder.events_arrived == 0
