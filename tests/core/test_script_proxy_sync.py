"""The script proxy for threaded servers over real HTTP: :class:`ScriptProxyWSGI` around a small
WSGI app under werkzeug's threaded server, a recording upstream of the test's own (which can
fail or stall on demand) or the fake API. The same code runs in Django's middleware and
Flask's extension (their tests, and tests/system/test_script_proxy_servers.py under gunicorn).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from goaltrack.script_proxy import (
    REAL_IP_HEADER,
    SCRIPT_TTL,
    Upstream,
    normalize_prefix,
    upstream_for,
)
from goaltrack.script_proxy_sync import (
    REFRESH_BACKOFF,
    ScriptProxyWSGI,
    SyncScriptProxy,
    forwarder,
)
from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import BROWSER_UA
from tests.support.script_upstream import SCRIPT, Recorder, recording_upstream
from tests.support.threaded import serve_wsgi
from tests.support.waiting import wait_until


def other_route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def site(proxy: SyncScriptProxy, prefix: str = "/_goaltrack") -> Iterator[str]:
    with serve_wsgi(ScriptProxyWSGI(other_route, prefix, lambda: proxy)) as url:
        yield url


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_upstream() as recorder:
        yield recorder


def test_other_paths_pass_through(recorder: Recorder) -> None:
    with site(SyncScriptProxy(recorder.upstream)) as url:
        assert httpx.get(url + "/page").text == "app"
        assert httpx.get(url + "/_goaltrack/other").text == "app"
        assert httpx.get(url + "/_goaltrack/script.js").content == SCRIPT
        assert httpx.post(url + "/_goaltrack/script.js").status_code == 405
        assert httpx.get(url + "/_goaltrack/events").status_code == 405
    assert normalize_prefix("_gt/") == "/_gt"


def test_stale_script_served_while_the_provider_is_down_then_refreshed(
    recorder: Recorder,
) -> None:
    clock = Clock()
    with site(SyncScriptProxy(recorder.upstream, clock=clock)) as url:
        script = url + "/_goaltrack/script.js"
        assert httpx.get(script).content == SCRIPT
        assert httpx.get(script).content == SCRIPT
        assert recorder.script_hits == 1  # cached

        clock.now += SCRIPT_TTL + 1  # stale from now on
        recorder.failing = True
        response = httpx.get(script)
        assert (response.status_code, response.content) == (200, SCRIPT)  # at once, stale
        wait_until(lambda: recorder.script_hits == 2, what="a background refresh")
        assert httpx.get(script).content == SCRIPT
        assert recorder.script_hits == 2  # no new attempt before the backoff passed

        recorder.failing = False
        clock.now += REFRESH_BACKOFF
        assert httpx.get(script).content == SCRIPT
        wait_until(lambda: recorder.script_hits == 3, what="the refresh after the backoff")


def test_a_cold_cache_with_the_provider_down_is_a_502() -> None:
    upstream_url = "http://127.0.0.1:9"  # nothing listens there
    upstream = Upstream(upstream_url + "/js/script.js", upstream_url + "/api/events")
    with site(SyncScriptProxy(upstream)) as url:
        assert httpx.get(url + "/_goaltrack/script.js").status_code == 502
        assert httpx.get(url + "/page").text == "app"


def test_events_are_answered_at_once_while_the_provider_is_slow(recorder: Recorder) -> None:
    recorder.delay = 2.0
    with site(SyncScriptProxy(recorder.upstream)) as url:
        started = time.monotonic()
        response = httpx.post(url + "/_goaltrack/events", content=b'{"type":"pageview"}')
        answered_in = time.monotonic() - started
        assert response.status_code == 202
        assert answered_in < 1.0, answered_in  # the provider takes 2 s
        wait_until(lambda: len(recorder.events) == 1, what="the event forwarded")
    assert recorder.events[0][1] == b'{"type":"pageview"}'


def test_a_full_queue_refuses_events_instead_of_keeping_them(recorder: Recorder) -> None:
    recorder.delay = 2.0
    # A pool of its own (one thread, one queued event): the bounds key the process's pools.
    proxy = SyncScriptProxy(recorder.upstream, threads=1, queue_size=1, timeout=4.75)
    pool = forwarder(1, 1, 4.75)
    with site(proxy) as url:
        events = url + "/_goaltrack/events"
        assert httpx.post(events, content=b"1").status_code == 202
        wait_until(lambda: pool.queued == 0, what="the first event taken by the thread")
        assert httpx.post(events, content=b"2").status_code == 202  # queued
        refused = httpx.post(events, content=b"3")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        wait_until(lambda: len(recorder.events) == 2, what="the two accepted events")
    assert sorted(body for _, body in recorder.events) == [b"1", b"2"]


def test_the_fake_api_receives_no_cookie_or_authorization(fake_api: FakeAPIServer) -> None:
    proxy = SyncScriptProxy(upstream_for("datafast", api_url=fake_api.api_url("datafast")))
    visitor = "3f0c1a52-8d4b-4c1e-9a8f-0b6d2f1e4c7a"
    with site(proxy) as url:
        response = httpx.post(
            url + "/_goaltrack/events",
            json={"type": "pageview", "visitorId": visitor, "sessionId": "s1"},
            headers={
                "User-Agent": BROWSER_UA,
                "Origin": "https://shop.example",
                "Cookie": "sessionid=site-secret; datafast_visitor_id=" + visitor,
                "Authorization": "Bearer site-secret",
                "X-Custom": "private",
                "X-Forwarded-For": "203.0.113.7",
            },
        )
        assert response.status_code == 202
        [pageview] = fake_api.state.wait_for_pageviews(1)
    assert (pageview["visitor_id"], pageview["source"]) == (visitor, "script")
    headers = pageview["headers"]
    assert headers["user-agent"] == BROWSER_UA
    assert headers["origin"] == "https://shop.example"
    assert headers[REAL_IP_HEADER] == "127.0.0.1"  # X-Forwarded-For from an untrusted peer
    for private in ("cookie", "authorization", "x-custom", "x-forwarded-for"):
        assert private not in headers
    assert "site-secret" not in repr(headers)


@pytest.mark.parametrize(
    ("trusted", "seen"),
    [((), "127.0.0.1"), (("10.0.0.0/8",), "127.0.0.1"), (("127.0.0.0/8",), "203.0.113.7")],
)
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    recorder: Recorder, trusted: tuple[str, ...], seen: str
) -> None:
    with site(SyncScriptProxy(recorder.upstream, trusted_proxies=trusted)) as url:
        httpx.post(
            url + "/_goaltrack/events",
            content=b"{}",
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"},
        )
        wait_until(lambda: len(recorder.events) == 1, what="the event forwarded")
    assert recorder.events[0][0][REAL_IP_HEADER] == seen


def test_a_10_mb_event_is_refused_unread(recorder: Recorder) -> None:
    with site(SyncScriptProxy(recorder.upstream)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            # Declared 10 MB, nothing of it sent: answered at once, the body never waited for.
            sock.sendall(
                b"POST /_goaltrack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")
        try:
            status: int | None = httpx.post(
                url + "/_goaltrack/events", content=b"x" * (10 * 1024 * 1024)
            ).status_code
        except httpx.TransportError:
            status = None  # the server closed the connection while the client was sending
        assert status in (413, None)
        assert httpx.get(url + "/page").text == "app"
    assert recorder.events == []


def test_a_forwarding_outage_is_logged_once(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    down = Upstream(recorder.upstream.script_url, "http://127.0.0.1:9/api/events")
    proxy = SyncScriptProxy(down)
    caplog.set_level("INFO", logger="goaltrack")
    with site(proxy) as url:
        for _ in range(3):
            assert httpx.post(url + "/_goaltrack/events", content=b"{}").status_code == 202
        wait_until(lambda: proxy._dropped == 3, what="three events not forwarded")
    said = [r.getMessage() for r in caplog.records if "forwarding an event" in r.getMessage()]
    assert len(said) == 1, said
