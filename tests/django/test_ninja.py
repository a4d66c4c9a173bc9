"""django-ninja operations under gunicorn and uvicorn, goals to the fake API over HTTP.

``@track_goal`` under ``@api.post``: the operation returns data or ``(status, data)``, not a
response, and its metadata callable takes the operation's arguments (a ``payload`` schema, a
query parameter); an async operation; a ``(400, data)`` answer and an ``HttpError`` track
nothing. ``track_goal(request, ...)`` inside an operation. The operations are in
``tests/servers/django_apis/ninja_api.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.support import BROWSER_UA
from tests.support.servers import serve_django_apis


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def api_url(
    request: pytest.FixtureRequest,
    fake_api_server: FakeAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    with serve_django_apis(fake_api_server, request.param, log) as running:
        yield running.url


def client(base_url: str, visitor_id: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"User-Agent": BROWSER_UA},
        cookies={"datafast_visitor_id": visitor_id},
        timeout=10,
    )


def test_operations_track_with_their_arguments(api_url: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(api_url, visitor_id) as api:
        signup = api.post("/ninja/signup", json={"plan": "team"})
        assert (signup.status_code, signup.json()) == (201, {"plan": "team"})
        assert api.post("/ninja/checkout", params={"plan": "pro"}).status_code == 200  # async
        assert api.post("/ninja/subscribe").json() == {"queued": True}
    goals = fake_api.wait_for_goals(3)
    assert sorted((g["name"], g["metadata"]) for g in goals) == [
        ("newsletter_subscribe", {"list": "weekly"}),
        ("purchase", {"plan": "pro"}),
        ("signup", {"plan": "team"}),
    ]
    assert {g["visitor_id"] for g in goals} == {visitor_id}


def test_error_answers_track_nothing(api_url: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(api_url, visitor_id) as api:
        assert api.post("/ninja/checkout", params={"plan": "gold"}).status_code == 400
        assert api.post("/ninja/conflict").status_code == 409
        assert api.post("/ninja/signup", json={}).status_code == 422  # ninja's own validation
        api.post("/ninja/checkout", params={"plan": "team"})  # the sentinel
    [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("purchase", {"plan": "team"})
    assert [g["name"] for g in fake_api.goals] == ["purchase"]
