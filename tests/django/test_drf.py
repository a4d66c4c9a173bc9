"""Django REST framework views under gunicorn and uvicorn, goals to the fake API over HTTP.

``track_goal(request, ...)`` with DRF's ``Request`` (which wraps Django's ``HttpRequest``),
``@track_goal`` on an ``APIView`` method (metadata from ``request.data``; DRF's 400 for a
``ValidationError`` tracks nothing), on a viewset's ``create`` and ``@action`` (metadata from the
URL's ``pk``), on an ``@api_view`` function and on an ``APIView`` class. The views are in
``tests/support/apps/django_apis/drf.py``.
"""

from __future__ import annotations

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import http_browser as client
from tests.support.django_app.support import BOT_UA

pytestmark = pytest.mark.slow  # gunicorn and uvicorn processes


def test_track_goal_takes_drfs_request(api_url: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(api_url, visitor_id) as api:
        answer = api.post("/drf/signup/", json={"plan": "pro"})
    assert (answer.status_code, answer.json()) == (201, {"queued": True})
    [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "pro"},
    )
    with client(api_url, None) as cookieless:
        assert cookieless.post("/drf/signup/", json={"plan": "pro"}).json() == {"queued": False}


def test_decorated_apiview_method_viewset_action_and_api_view(
    api_url: str, fake_api: FakeAPIServer
) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(api_url, visitor_id) as api:
        assert api.post("/drf/purchase/", json={"plan": "team"}).status_code == 201
        assert api.post("/drf/accounts/", json={"name": "acme"}).status_code == 201
        assert api.post("/drf/accounts/42/upgrade/", json={}).status_code == 200
        assert api.post("/drf/newsletter/").status_code == 200
        assert api.get("/drf/ping/").status_code == 200
    goals = fake_api.wait_for_goals(5)
    assert sorted((g["name"], g["metadata"]) for g in goals) == [
        ("account_created", {}),
        ("newsletter", {"list": "weekly"}),
        ("ping", {}),
        ("purchase", {"plan": "team", "status": "201"}),
        ("upgrade", {"account": "42"}),
    ]
    assert {g["visitor_id"] for g in goals} == {visitor_id}


def test_drf_errors_and_bots_track_nothing(api_url: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with client(api_url, visitor_id) as api:
        assert api.post("/drf/purchase/", json={"plan": "gold"}).status_code == 400  # raised
        assert api.post("/drf/accounts/", json={}).status_code == 400  # a 400 Response
        assert api.get("/drf/newsletter/").status_code == 405  # DRF's answer, not the view's
    with client(api_url, visitor_id, BOT_UA) as bot:
        assert bot.post("/drf/purchase/", json={"plan": "pro"}).status_code == 201
    with client(api_url, visitor_id) as api:  # the sentinel, after everything above
        api.post("/drf/purchase/", json={"plan": "pro"})
    [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"] == {"plan": "pro", "status": "201"}
    assert [g["name"] for g in fake_api.goals] == ["purchase"]
