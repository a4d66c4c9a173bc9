"""track_goal as a call and as a decorator, on function views and class-based views."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import django
import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client

from goaltrack import InvalidGoal, get_tracker
from goaltrack.django import track_goal
from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import django_async_browser
from tests.support.django_app.support import BROWSER_UA, goaltrack_setting

# settings.GOALTRACK points at the fake API for every test here
pytestmark = pytest.mark.usefixtures("api")


@pytest.fixture
def async_browser(visitor_id: str) -> AsyncClient:
    return django_async_browser(visitor_id)


def delivered_nothing(api: FakeAPIServer) -> bool:
    return get_tracker().flush(10) and api.goals == []


def test_helper_tracks_now(api: FakeAPIServer, browser: Client, visitor_id: str) -> None:
    response = browser.get("/helper/?plan=pro")
    assert response.json() == {"queued": True}
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "pro"},
    )


@pytest.mark.anyio
async def test_helper_in_an_async_view(
    api: FakeAPIServer, async_browser: AsyncClient, visitor_id: str
) -> None:
    response = await async_browser.get("/helper-async/?plan=team")
    assert response.json() == {"queued": True}
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "team"},
    )


def test_helper_for_a_cookieless_visitor_sends_nothing(api: FakeAPIServer) -> None:
    response = Client(HTTP_USER_AGENT=BROWSER_UA).get("/helper/")
    assert response.json() == {"queued": False}
    assert delivered_nothing(api)


def test_helper_ignores_a_malformed_cookie(api: FakeAPIServer) -> None:
    client = Client(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = "<script>"
    assert client.get("/helper/").json() == {"queued": False}
    assert delivered_nothing(api)


def test_helper_raises_invalid_goal_to_the_caller(browser: Client) -> None:
    with pytest.raises(InvalidGoal, match="reserved"):
        browser.get("/helper-bad-name/?name=identify")


def test_helper_raises_invalid_goal_for_bad_metadata(rf: Any) -> None:
    request = rf.get("/")
    with pytest.raises(InvalidGoal, match="metadata"):
        track_goal(request, "signup", {"plan": ["a", "list"]})  # type: ignore[dict-item]
    with pytest.raises(InvalidGoal, match="callables are for decorators"):
        track_goal(request, "signup", lambda request, response: {})  # type: ignore[call-overload]


def test_helper_validates_even_for_cookieless_visitors(rf: Any) -> None:
    with pytest.raises(InvalidGoal):
        track_goal(rf.get("/"), "Not Valid!")


def test_helper_misuse_is_a_type_error(rf: Any) -> None:
    with pytest.raises(TypeError, match="pass the request first"):
        track_goal("signup", "extra")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="HttpRequest or a goal name"):
        track_goal(42, "signup")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/cbv-method/", "cbv_post"),
        ("/cbv-dispatch/", "cbv_dispatch"),
        ("/cbv-direct/", "cbv_direct"),
        ("/cbv-class/", "cbv_class"),
    ],
)
def test_decorated_class_based_views(
    api: FakeAPIServer, browser: Client, visitor_id: str, path: str, name: str
) -> None:
    assert browser.post(path + "?status=400").status_code == 400
    assert browser.post(path).status_code == 200
    goals = api.wait_for_goals(1)
    assert get_tracker().flush(10)
    assert [(g["name"], g["visitor_id"]) for g in api.goals] == [(name, visitor_id)]
    assert len(goals) == 1


def test_decorated_view_tracks_with_metadata_from_request_and_response(
    api: FakeAPIServer, browser: Client
) -> None:
    assert browser.post("/decorated/?plan=pro&status=201").status_code == 201
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("purchase", {"plan": "pro", "status": "201"})


@pytest.mark.parametrize("status", [302, 399])
def test_decorated_view_tracks_below_400(api: FakeAPIServer, browser: Client, status: int) -> None:
    assert browser.post(f"/decorated/?status={status}").status_code == status
    assert [g["name"] for g in api.wait_for_goals(1)] == ["purchase"]


@pytest.mark.parametrize("status", [400, 404, 500])
def test_decorated_view_does_not_track_errors(
    api: FakeAPIServer, browser: Client, status: int
) -> None:
    assert browser.post(f"/decorated/?status={status}").status_code == status
    browser.post("/decorated/?plan=sentinel")
    [goal] = api.wait_for_goals(1)
    assert goal["metadata"]["plan"] == "sentinel"


def test_decorated_view_does_not_track_when_it_raises(api: FakeAPIServer, visitor_id: str) -> None:
    client = Client(HTTP_USER_AGENT=BROWSER_UA, raise_request_exception=False)
    client.cookies["datafast_visitor_id"] = visitor_id
    assert client.post("/decorated-raises/").status_code == 500
    assert delivered_nothing(api)


@pytest.mark.anyio
async def test_decorated_async_view(api: FakeAPIServer, async_browser: AsyncClient) -> None:
    assert (await async_browser.post("/decorated-async/?status=404")).status_code == 404
    assert (await async_browser.post("/decorated-async/?plan=pro")).status_code == 200
    await get_tracker().aflush(10)
    assert [(g["name"], g["metadata"]) for g in api.goals] == [
        ("purchase", {"plan": "pro", "status": "200"})
    ]


@pytest.mark.anyio
async def test_decorated_async_class_based_view(
    api: FakeAPIServer, async_browser: AsyncClient
) -> None:
    assert (await async_browser.post("/cbv-async-class/?status=400")).status_code == 400
    assert (await async_browser.post("/cbv-async-class/")).status_code == 200
    await get_tracker().aflush(10)
    assert [g["name"] for g in api.goals] == ["cbv_async_class"]


@pytest.mark.anyio
@pytest.mark.skipif(
    django.VERSION < (5, 0), reason="method_decorator wraps async methods from Django 5.0"
)
async def test_method_decorator_on_an_async_handler(
    api: FakeAPIServer, async_browser: AsyncClient
) -> None:
    assert (await async_browser.post("/cbv-async-method/")).status_code == 200
    assert [g["name"] for g in api.wait_for_goals(1)] == ["cbv_async_post"]


@pytest.mark.anyio
async def test_async_decorator_in_sync_mode_delivers_off_the_event_loop(
    api: FakeAPIServer, async_browser: AsyncClient, settings: Any
) -> None:
    settings.GOALTRACK = goaltrack_setting(api, MODE="sync")
    assert (await async_browser.post("/decorated-async/")).status_code == 200
    # sync mode: delivered before the response came back
    assert [g["name"] for g in api.goals] == ["purchase"]


def test_literal_metadata(api: FakeAPIServer, browser: Client) -> None:
    browser.post("/decorated-literal-metadata/")
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("newsletter", {"source": "footer"})


def test_description(api: FakeAPIServer, browser: Client) -> None:
    browser.post("/decorated-description/")
    [goal] = api.wait_for_goals(1)
    assert goal["description"] == "from a decorator"


def test_bad_metadata_at_request_time_is_logged_not_raised(
    api: FakeAPIServer, browser: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        response = browser.post("/decorated-bad-metadata/")
    assert (response.status_code, response.content) == (200, b"still fine")
    assert "'checkout' from a decorated view was not tracked" in caplog.text
    assert delivered_nothing(api)


@pytest.mark.parametrize("name", ["Not Valid!", "x" * 65, "", "caf\u00e9"])
def test_decorator_rejects_a_literal_bad_name_at_import(name: str) -> None:
    with pytest.raises(InvalidGoal):
        track_goal(name)


def test_decorator_rejects_literal_bad_metadata_at_import() -> None:
    with pytest.raises(InvalidGoal, match="metadata key"):
        track_goal("signup", metadata={"Bad Key": "x"})
    with pytest.raises(InvalidGoal, match="mapping or a callable"):
        track_goal("signup", metadata=42)  # type: ignore[call-overload]


def test_decorator_without_a_request_logs(caplog: pytest.LogCaptureFixture) -> None:
    @track_goal("signup")
    def not_a_view(value: int) -> HttpResponse:
        return HttpResponse(str(value))

    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert not_a_view(3).content == b"3"
    assert "found no HttpRequest" in caplog.text


def test_decorator_keeps_the_view_s_name() -> None:
    def my_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    decorated: Callable[[HttpRequest], HttpResponse] = track_goal("signup")(my_view)
    assert decorated.__name__ == "my_view"
    with pytest.raises(TypeError, match="View subclass"):
        track_goal("signup")(int)


def test_importing_without_django_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['django'] = None\n"
        "try:\n    import goaltrack.django\nexcept ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install 'goaltrack[django]'" in result.stdout


def test_csrf_exempt_above_or_below_the_decorator_still_exempts(
    api: FakeAPIServer, visitor_id: str, settings: Any
) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = visitor_id
    assert client.post("/csrf-exempt-outer/").status_code == 200
    assert client.post("/csrf-exempt-inner/").status_code == 200
    assert client.post("/decorated/").status_code == 403  # not exempt: refused, not tracked
    assert get_tracker().flush(10)
    assert sorted(goal["name"] for goal in api.goals) == ["webhook_inner", "webhook_outer"]
