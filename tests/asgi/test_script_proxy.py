"""The ASGI script proxy over real HTTP: uvicorn in threads, the fake API or a small upstream of
the test's own that records what it receives (and can fail or stall on demand)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from goaltrack import GoalTracker
from goaltrack.asgi import GoalTrackMiddleware, script_global
from goaltrack.script_proxy import REAL_IP_HEADER, Upstream
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY
from tests.support.script_upstream import SCRIPT, Recorder, recording_upstream
from tests.support.threaded import serve_asgi as serve_with_proxy_headers

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def other_route(request: Request) -> Response:
    return PlainTextResponse("app")


def serve_asgi(app: Any) -> Any:
    # uvicorn would itself rewrite the client from X-Forwarded-For of a loopback peer: here the
    # proxy decides, from the ASGI client it is given.
    return serve_with_proxy_headers(app, proxy_headers=False)


def site(upstream: Upstream, **options: Any) -> GoalTrackMiddleware:
    app = Starlette(routes=[Route("/page", other_route), Route("/_goaltrack/other", other_route)])
    tracker = GoalTracker(DATAFAST_KEY, mode="disabled", flush_at_exit=False)
    return GoalTrackMiddleware(
        app, tracker=tracker, script_proxy=True, script_proxy_upstream=upstream, **options
    )


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, Upstream]]:
    with recording_upstream() as recorder:
        yield recorder, recorder.upstream


def test_the_fake_apis_script_is_served_through_the_proxy(fake_api: FakeAPIServer) -> None:
    base = fake_api.api_url("datafast").rstrip("/")
    upstream = Upstream(base + "/js/script.js", base + "/api/events")
    with serve_asgi(site(upstream)) as url:
        response = httpx.get(url + "/_goaltrack/script.js")
        assert response.status_code == 200
        assert response.text == httpx.get(upstream.script_url).text
        assert httpx.get(url + "/page").text == "app"
        assert httpx.get(url + "/_goaltrack/other").text == "app"


def test_the_script_is_cached_and_served_stale_when_upstream_fails(
    recorder: tuple[Recorder, Upstream],
) -> None:
    upstream_app, upstream = recorder
    middleware = site(upstream)
    with serve_asgi(middleware) as url:
        assert httpx.get(url + "/_goaltrack/script.js").content == SCRIPT
        assert httpx.get(url + "/_goaltrack/script.js").content == SCRIPT
        assert upstream_app.script_hits == 1

        assert middleware._proxy is not None
        middleware._proxy.cache.ttl = 0  # every entry stale from now on
        upstream_app.failing = True
        response = httpx.get(url + "/_goaltrack/script.js")
        assert (response.status_code, response.content) == (200, SCRIPT)
        assert upstream_app.script_hits == 2


def test_without_a_cached_script_a_failing_upstream_is_a_502() -> None:
    upstream = Upstream("http://127.0.0.1:9/js/script.js", "http://127.0.0.1:9/api/events")
    with serve_asgi(site(upstream)) as url:
        assert httpx.get(url + "/_goaltrack/script.js").status_code == 502


def test_events_are_forwarded_with_the_ip_and_without_the_sites_credentials(
    recorder: tuple[Recorder, Upstream],
) -> None:
    upstream_app, upstream = recorder
    with serve_asgi(site(upstream)) as url:
        response = httpx.post(
            url + "/_goaltrack/events",
            content=b'{"type":"pageview"}',
            headers={
                "Content-Type": "application/json",
                "User-Agent": BROWSER,
                "Origin": "https://example.com",
                "Cookie": "sessionid=secret; datafast_visitor_id=v1",
                "Authorization": "Bearer site-secret",
                "X-Custom": "private",
                "X-Forwarded-For": "203.0.113.7",
            },
        )
    assert response.status_code == 200
    assert response.json() == {"status": "success"}
    [(headers, body)] = upstream_app.events
    assert body == b'{"type":"pageview"}'
    assert headers["user-agent"] == BROWSER
    assert headers["content-type"] == "application/json"
    assert headers["origin"] == "https://example.com"
    assert headers[REAL_IP_HEADER] == "127.0.0.1"  # the peer: X-Forwarded-For not trusted
    for private in ("cookie", "authorization", "x-custom", "x-forwarded-for"):
        assert private not in headers


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    recorder: tuple[Recorder, Upstream],
) -> None:
    upstream_app, upstream = recorder
    with serve_asgi(site(upstream, trusted_proxies=["127.0.0.1"])) as url:
        httpx.post(
            url + "/_goaltrack/events",
            content=b"{}",
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"},
        )
    [(headers, _)] = upstream_app.events
    assert headers[REAL_IP_HEADER] == "203.0.113.7"


def post_status(url: str, content: Any) -> int | None:
    """The status of a POST whose body the server may stop reading: None when the connection
    was closed before the client had sent it all (the server refused it without reading on)."""
    try:
        return httpx.post(url, content=content).status_code
    except httpx.TransportError:
        return None


def test_a_10_mb_event_is_refused(recorder: tuple[Recorder, Upstream]) -> None:
    upstream_app, upstream = recorder
    with serve_asgi(site(upstream)) as url:
        # Declared 10 MB, nothing of it sent: answered 413 at once, the body never waited for.
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /_goaltrack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the bound while reading
            for _ in range(160):
                yield b"x" * 65536

        events = url + "/_goaltrack/events"
        assert post_status(events, b"x" * (10 * 1024 * 1024)) in (413, None)
        assert post_status(events, chunks()) in (413, None)
        assert httpx.get(url + "/page").text == "app"  # the server is fine
    assert upstream_app.events == []


def test_a_slow_upstream_does_not_slow_the_app(recorder: tuple[Recorder, Upstream]) -> None:
    upstream_app, upstream = recorder
    upstream_app.delay = 2.0
    with serve_asgi(site(upstream)) as url:
        slow_result: list[int] = []
        slow = threading.Thread(
            target=lambda: slow_result.append(
                httpx.post(url + "/_goaltrack/events", content=b"{}", timeout=10).status_code
            )
        )
        started = time.monotonic()
        slow.start()
        time.sleep(0.2)  # the event is on its way to the stalled upstream
        latencies = []
        for _ in range(5):
            before = time.monotonic()
            assert httpx.get(url + "/page").text == "app"
            latencies.append(time.monotonic() - before)
        slow.join(10)
    assert slow_result == [200]
    assert time.monotonic() - started >= 2.0
    assert max(latencies) < 1.0, latencies


def test_the_script_tag_points_at_the_proxy() -> None:
    tag = script_global("datafast", "dfid_proxy", proxy_prefix="/_goaltrack")()
    assert 'src="/_goaltrack/script.js"' in tag
    assert 'data-api-url="/_goaltrack/events"' in tag


def test_off_by_default_every_request_passes_through(
    recorder: tuple[Recorder, Upstream],
) -> None:
    upstream_app, _ = recorder
    app = Starlette(routes=[Route("/page", other_route)])
    tracker = GoalTracker(DATAFAST_KEY, mode="disabled", flush_at_exit=False)
    with serve_asgi(GoalTrackMiddleware(app, tracker=tracker)) as url:
        assert httpx.get(url + "/_goaltrack/script.js").status_code == 404
    assert upstream_app.script_hits == 0


def test_without_upstream_urls_faurya_has_no_proxy_and_development_refuses_to_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from goaltrack import InvalidConfiguration
    from goaltrack.script_proxy import upstream_for

    with pytest.raises(InvalidConfiguration, match="unknown"):
        upstream_for("faurya")
    app = Starlette(routes=[Route("/page", other_route)])
    tracker = GoalTracker("faurya-key", provider="faurya", mode="disabled", flush_at_exit=False)
    middleware = GoalTrackMiddleware(app, tracker=tracker, script_proxy=True, debug=True)
    assert middleware._startup() is not None
    caplog.set_level(logging.ERROR, logger="goaltrack")
    with serve_asgi(GoalTrackMiddleware(app, tracker=tracker, script_proxy=True)) as url:
        caplog.clear()  # what the lifespan startup said
        for _ in range(3):
            assert httpx.get(url + "/_goaltrack/script.js").status_code == 404
        assert httpx.get(url + "/page").text == "app"
    said = [r.getMessage() for r in caplog.records if "script proxy cannot run" in r.getMessage()]
    assert len(said) == 1, said  # once, not per request
