"""Async views (and sync ones) of the test project under a real ASGI server, uvicorn."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import http_browser as client
from tests.support.django_app.support import BOT_UA, BROWSER_UA, serve_test_project

pytestmark = pytest.mark.slow  # a uvicorn process


@pytest.fixture(scope="module")
def asgi_server(fake_api_server: FakeAPIServer) -> Iterator[str]:
    with serve_test_project(fake_api_server, "uvicorn") as base_url:
        yield base_url


def test_async_views_track(asgi_server: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(asgi_server, visitor_id) as browser:
        assert browser.post("/decorated-async/?status=400").status_code == 400
        assert browser.post("/decorated-async/?plan=pro").status_code == 200
        assert browser.get("/helper-async/?plan=team").json() == {"queued": True}
        assert browser.post("/cbv-async-class/").status_code == 200
        assert browser.post("/cbv-method/").status_code == 200  # a sync view in the ASGI stack
    goals = fake_api.wait_for_goals(4)
    assert sorted((g["name"], g["metadata"].get("plan")) for g in goals) == [
        ("cbv_async_class", None),
        ("cbv_post", None),
        ("purchase", "pro"),
        ("signup", "team"),
    ]
    assert {g["visitor_id"] for g in goals} == {visitor_id}


def test_current_visitor_under_concurrency_and_streaming(asgi_server: str) -> None:
    visitors = [f"0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d{n:02d}" for n in range(8)]
    with httpx.Client(base_url=asgi_server, headers={"User-Agent": BROWSER_UA}) as http:
        for visitor_id in visitors:
            http.cookies.set("datafast_visitor_id", visitor_id)
            assert http.get("/visitor-async/").json()["current"] == visitor_id
            assert http.get("/visitor/").json()["current"] == visitor_id
            assert http.get("/stream-async/").text == f"0:{visitor_id}\n1:{visitor_id}\n"
    with client(asgi_server, None) as anonymous:
        assert anonymous.get("/visitor-async/").json()["current"] is None


def test_bots_and_cookieless_visitors_track_nothing(
    asgi_server: str, fake_api: FakeAPIServer
) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(asgi_server, visitor_id, BOT_UA) as bot:
        assert bot.post("/decorated-async/?plan=bot").status_code == 200
    with client(asgi_server, None) as cookieless:
        assert cookieless.get("/helper-async/").json() == {"queued": False}
    with client(asgi_server, visitor_id) as browser:
        browser.post("/decorated-async/?plan=sentinel")
    [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"]["plan"] == "sentinel"
    # the bot's goal would have been tracked before the sentinel: it was not
    assert [g["metadata"]["plan"] for g in fake_api.goals] == ["sentinel"]
