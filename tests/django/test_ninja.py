"""django-ninja operations under gunicorn and uvicorn, goals to the fake API over HTTP.

``@track_goal`` under ``@api.post``: the operation returns data or ``(status, data)``, not a
response, and its metadata callable takes the operation's arguments (a ``payload`` schema, a
query parameter); an async operation; a ``(400, data)`` answer and an ``HttpError`` track
nothing. ``track_goal(request, ...)`` inside an operation. The operations are in
``tests/support/apps/django_apis/ninja_api.py``.
"""

from __future__ import annotations

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import http_browser as client

pytestmark = pytest.mark.slow  # gunicorn and uvicorn processes


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
