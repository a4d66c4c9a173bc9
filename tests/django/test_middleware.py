"""GoalTrackMiddleware: the visitor per request, sync and async, bots, streaming, no middleware."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings

from goaltrack import Visitor, get_tracker
from goaltrack.django import RequestGoals, current_visitor
from goaltrack.django.middleware import GoalTrackMiddleware
from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import django_browser as browser
from tests.support.django_app.support import BOT_UA, BROWSER_UA, goaltrack_setting

WITHOUT_GOALTRACK = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ID = "s0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21"


# settings.GOALTRACK points at the fake API for every test here
pytestmark = pytest.mark.usefixtures("api")


def test_binds_the_visitor_for_the_request(visitor_id: str) -> None:
    payload = browser(visitor_id).get("/visitor/").json()
    assert payload == {"current": visitor_id, "request": visitor_id, "is_bot": False}
    assert current_visitor() is None  # reset after the request


@pytest.mark.anyio
async def test_binds_the_visitor_in_async_views(visitor_id: str) -> None:
    client = AsyncClient(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = visitor_id
    payload = (await client.get("/visitor-async/")).json()
    assert payload == {"current": visitor_id, "request": visitor_id, "is_bot": False}
    assert current_visitor() is None


@pytest.mark.anyio
async def test_binds_the_visitor_for_sync_views_in_an_async_stack(visitor_id: str) -> None:
    client = AsyncClient(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = visitor_id
    payload = (await client.get("/visitor/")).json()
    assert payload["current"] == visitor_id


def test_streaming_chunks_see_the_visitor_and_it_does_not_leak(visitor_id: str) -> None:
    response = browser(visitor_id).get("/stream/")
    assert b"".join(response.streaming_content) == (  # type: ignore[arg-type]
        f"0:{visitor_id}\n1:{visitor_id}\n".encode()
    )
    assert current_visitor() is None


@pytest.mark.anyio
async def test_async_streaming_chunks_see_the_visitor(visitor_id: str) -> None:
    client = AsyncClient(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = visitor_id
    response = await client.get("/stream-async/")
    chunks = [chunk async for chunk in response.streaming_content]  # type: ignore[union-attr]
    assert b"".join(chunks) == f"0:{visitor_id}\n1:{visitor_id}\n".encode()
    assert current_visitor() is None


def test_cookieless_visitor_gets_no_visitor_and_no_goal(api: FakeAPIServer) -> None:
    # no visitor cookie: nothing for the middleware to read (is_bot is None: never looked at)
    assert browser(None).get("/visitor/").json() == {
        "current": None,
        "request": None,
        "is_bot": None,
    }
    assert browser(None).post("/decorated/").status_code == 200
    assert get_tracker().flush(10)
    assert api.goals == []


def test_bots_are_skipped(api: FakeAPIServer, visitor_id: str) -> None:
    bot = browser(visitor_id, BOT_UA)
    assert bot.get("/visitor/").json() == {"current": None, "request": None, "is_bot": True}
    assert bot.get("/helper/").json() == {"queued": False}
    assert bot.post("/decorated/?plan=bot").status_code == 200
    browser(visitor_id).post("/decorated/?plan=human")
    [goal] = api.wait_for_goals(1)
    assert get_tracker().flush(10)
    assert [g["metadata"]["plan"] for g in api.goals] == ["human"]
    assert goal["visitor_id"] == visitor_id


def test_bots_are_skipped_without_the_middleware_too(api: FakeAPIServer, visitor_id: str) -> None:
    with override_settings(MIDDLEWARE=WITHOUT_GOALTRACK):
        assert browser(visitor_id, BOT_UA).get("/helper/").json() == {"queued": False}
    assert get_tracker().flush(10)
    assert api.goals == []


def test_skip_bots_can_be_turned_off(api: FakeAPIServer, settings: Any, visitor_id: str) -> None:
    settings.GOALTRACK = goaltrack_setting(api, SKIP_BOTS=False)
    assert browser(visitor_id, "my-uptime-bot/1.0").get("/helper/").json() == {"queued": True}
    assert api.wait_for_goals(1)[0]["visitor_id"] == visitor_id


def test_track_goal_works_without_the_middleware(api: FakeAPIServer, visitor_id: str) -> None:
    with override_settings(MIDDLEWARE=WITHOUT_GOALTRACK):
        client = browser(visitor_id)
        assert client.get("/visitor/").json() == {"current": None, "request": None, "is_bot": None}
        assert client.get("/helper/?plan=pro").json() == {"queued": True}
        assert client.post("/cbv-method/").status_code == 200
    goals = api.wait_for_goals(2)
    assert sorted((g["name"], g["visitor_id"]) for g in goals) == [
        ("cbv_post", visitor_id),
        ("signup", visitor_id),
    ]


def test_listed_twice_reads_the_request_once(visitor_id: str) -> None:
    middleware = "goaltrack.django.middleware.GoalTrackMiddleware"
    with override_settings(MIDDLEWARE=[middleware, *WITHOUT_GOALTRACK, middleware]):
        assert browser(visitor_id).get("/visitor/").json()["current"] == visitor_id
    assert current_visitor() is None


def test_sync_and_async_capable() -> None:
    def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    async def aget_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    assert GoalTrackMiddleware.sync_capable
    assert GoalTrackMiddleware.async_capable
    assert not iscoroutinefunction(GoalTrackMiddleware(get_response))
    assert iscoroutinefunction(GoalTrackMiddleware(aget_response))


def test_direct_call_with_a_request_factory(visitor_id: str) -> None:
    seen: list[Visitor | None] = []

    def get_response(request: HttpRequest) -> HttpResponse:
        seen.append(current_visitor())
        return HttpResponse()

    request = RequestFactory().get(
        "/",
        HTTP_USER_AGENT=BROWSER_UA,
        HTTP_COOKIE=f"datafast_visitor_id={visitor_id}; datafast_session_id={SESSION_ID}",
    )
    GoalTrackMiddleware(get_response)(request)
    assert seen == [Visitor(visitor_id, SESSION_ID)]
    state = request.goaltrack  # type: ignore[attr-defined]
    assert isinstance(state, RequestGoals)
    assert state.visitor == Visitor(visitor_id, SESSION_ID)
    assert "RequestGoals" in repr(state)


@pytest.mark.anyio
async def test_direct_async_call_resets_even_when_the_view_raises(visitor_id: str) -> None:
    async def get_response(request: HttpRequest) -> HttpResponse:
        assert current_visitor() == Visitor(visitor_id, None)
        raise RuntimeError("boom")

    request = RequestFactory().get("/", HTTP_COOKIE=f"datafast_visitor_id={visitor_id}")
    with pytest.raises(RuntimeError, match="boom"):
        await GoalTrackMiddleware(get_response)(request)
    assert current_visitor() is None


def test_request_goals_track(api: FakeAPIServer, visitor_id: str) -> None:
    request = RequestFactory().get("/", HTTP_COOKIE=f"datafast_visitor_id={visitor_id}")
    GoalTrackMiddleware(lambda request: HttpResponse())(request)
    assert request.goaltrack.track("trial", {"days": 14})  # type: ignore[attr-defined]
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("trial", {"days": "14"})


def test_flush_at_request_end(api: FakeAPIServer, settings: Any, visitor_id: str) -> None:
    settings.GOALTRACK = goaltrack_setting(api, FLUSH_AT_REQUEST_END=True)
    api.set_faults(latency_ms=200)
    browser(visitor_id).get("/helper/")
    # Delivered before the response came back: no waiting needed.
    assert [g["name"] for g in api.goals] == ["signup"]


@pytest.mark.anyio
async def test_flush_at_request_end_async(
    api: FakeAPIServer, settings: Any, visitor_id: str
) -> None:
    settings.GOALTRACK = goaltrack_setting(api, FLUSH_AT_REQUEST_END=5)
    client = AsyncClient(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = visitor_id
    await client.get("/helper-async/")
    assert [g["name"] for g in api.goals] == ["signup"]


def test_flowsery_cookies(api: FakeAPIServer, settings: Any) -> None:
    settings.GOALTRACK = goaltrack_setting(api, "flowsery")
    client = Client(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["_fs_vid"] = "vid_abc123"
    client.cookies["_fs_sid"] = "sid_xyz789"
    assert client.get("/helper/?plan=pro").json() == {"queued": True}
    [goal] = api.wait_for_goals(1)
    assert (goal["provider"], goal["visitor_id"], goal["session_id"]) == (
        "flowsery",
        "vid_abc123",
        "sid_xyz789",
    )


def test_cookies_are_read_only_when_the_visitor_is_asked_for(
    visitor_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from goaltrack import context

    reads: list[object] = []
    real = context.visitor_from_cookies

    def counting(cookies: Any, provider: Any) -> Visitor | None:
        reads.append(cookies)
        return real(cookies, provider)

    monkeypatch.setattr(context, "visitor_from_cookies", counting)
    request = RequestFactory().get(
        "/", HTTP_USER_AGENT=BROWSER_UA, HTTP_COOKIE=f"datafast_visitor_id={visitor_id}"
    )
    GoalTrackMiddleware(lambda request: HttpResponse())(request)
    assert reads == []  # a request that tracks nothing parses nothing
    state = request.goaltrack  # type: ignore[attr-defined]
    assert state.visitor == Visitor(visitor_id, None)
    assert state.is_bot is False
    assert state.visitor == Visitor(visitor_id, None)
    assert len(reads) == 1  # then once


def test_is_bot_read_first_still_reads_the_visitor_once(visitor_id: str) -> None:
    request = RequestFactory().get(
        "/", HTTP_USER_AGENT=BOT_UA, HTTP_COOKIE=f"datafast_visitor_id={visitor_id}"
    )
    GoalTrackMiddleware(lambda request: HttpResponse())(request)
    state = request.goaltrack  # type: ignore[attr-defined]
    assert state.is_bot is True
    assert state.visitor is None


def test_current_visitor_during_the_request_follows_the_cookies(visitor_id: str) -> None:
    seen: list[Visitor | None] = []

    def get_response(request: HttpRequest) -> HttpResponse:
        seen.append(current_visitor())
        seen.append(current_visitor())
        return HttpResponse()

    for user_agent in (BROWSER_UA, BOT_UA):
        request = RequestFactory().get(
            "/", HTTP_USER_AGENT=user_agent, HTTP_COOKIE=f"datafast_visitor_id={visitor_id}"
        )
        GoalTrackMiddleware(get_response)(request)
    assert seen == [Visitor(visitor_id, None)] * 2 + [None] * 2
    assert current_visitor() is None


def test_parsed_cookies_are_read_when_the_middleware_ran_after_parsing(visitor_id: str) -> None:
    # As before the visitor became lazy: cookies Django had parsed when the middleware ran are
    # the ones read, even if the visitor is asked for later.
    request = RequestFactory().get("/", HTTP_COOKIE=f"datafast_visitor_id={visitor_id}")
    assert request.COOKIES["datafast_visitor_id"] == visitor_id
    request.META["HTTP_COOKIE"] = "datafast_visitor_id=not-this-one"
    GoalTrackMiddleware(lambda request: HttpResponse())(request)
    assert request.goaltrack.visitor == Visitor(visitor_id, None)  # type: ignore[attr-defined]
