"""The fake API's tracking script and the pageview endpoint it reports to, over real HTTP.

The script itself runs in a browser in the journey tests; here: what is served, the CORS answers
a browser needs for the cross-origin pageview, and that a reported pageview registers the visitor.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from goaltrack.testing.fake_api import tracking_script
from goaltrack.testing.server import FakeAPIServer

PAGE_ORIGIN = "http://127.0.0.1:9"  # the site embedding the script: another origin
COOKIES = {
    "datafast": ("datafast_visitor_id", "datafast_session_id"),
    "faurya": ("faurya_visitor_id", "faurya_session_id"),
    "flowsery": ("_fs_vid", "_fs_sid"),
}


@pytest.mark.parametrize("provider", sorted(COOKIES))
def test_the_script_sets_the_providers_cookies_and_reports_to_its_own_origin(
    fake_api: FakeAPIServer, provider: str
) -> None:
    response = httpx.get(f"{fake_api.api_url(provider)}/js/script.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    visitor_cookie, session_cookie = COOKIES[provider]
    assert f'"visitorCookie": "{visitor_cookie}"' in response.text
    assert f'"sessionCookie": "{session_cookie}"' in response.text
    assert f'"eventsUrl": "{fake_api.api_url(provider)}/api/events"' in response.text
    assert "document.cookie" in response.text


def test_the_bare_script_path_serves_the_default_provider(fake_api: FakeAPIServer) -> None:
    response = httpx.get(f"{fake_api.url}/js/script.js")
    assert '"visitorCookie": "datafast_visitor_id"' in response.text
    assert f'"eventsUrl": "{fake_api.url}/api/events"' in response.text
    assert httpx.get(f"{fake_api.url}/nope/js/script.js").status_code == 404


def test_the_config_cannot_close_the_script_element() -> None:
    script = tracking_script("datafast", "http://127.0.0.1:1/</script><b>")
    assert "</script>" not in script
    with pytest.raises(ValueError, match="unknown provider"):
        tracking_script("plausible", "http://127.0.0.1:1/")


def test_cors_preflight_and_pageview(fake_api: FakeAPIServer) -> None:
    url = f"{fake_api.api_url('datafast')}/api/events"
    preflight = httpx.options(
        url,
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

    visitor_id, session_id = str(uuid.uuid4()), f"s{uuid.uuid4()}"
    event = {"type": "pageview", "visitorId": visitor_id, "sessionId": session_id, "url": "/x"}
    answer = httpx.post(url, json=event, headers={"Origin": PAGE_ORIGIN})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    [pageview] = fake_api.state.wait_for_pageviews(1)
    assert pageview["provider"] == "datafast"
    assert (pageview["visitor_id"], pageview["session_id"]) == (visitor_id, session_id)
    assert (pageview["url"], pageview["source"]) == ("/x", "script")

    # The visitor now has a pageview: DataFast accepts its goals.
    goal = httpx.post(
        f"{fake_api.api_url('datafast')}/api/v1/goals",
        json={"name": "signup", "datafast_visitor_id": visitor_id},
        headers={"Authorization": "Bearer df_script_test_key"},
    )
    assert goal.status_code == 200, goal.text


@pytest.mark.parametrize(
    "event",
    [
        {"type": "click", "visitorId": "a", "sessionId": "b"},
        {"type": "pageview", "visitorId": "", "sessionId": "b"},
        {"type": "pageview", "visitorId": "a" * 129, "sessionId": "b"},
        {"type": "pageview", "visitorId": "a", "sessionId": 3},
        {"type": "pageview", "visitorId": "a", "sessionId": "b", "url": ["/"]},
    ],
)
def test_malformed_pageviews_are_refused_with_cors_headers(
    fake_api: FakeAPIServer, event: dict[str, object]
) -> None:
    answer = httpx.post(f"{fake_api.url}/api/events", json=event, headers={"Origin": PAGE_ORIGIN})
    assert answer.status_code == 400
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert fake_api.state.pageviews == []


def test_reset_forgets_pageviews(fake_api: FakeAPIServer) -> None:
    fake_api.add_pageview("faurya")
    assert [p["source"] for p in fake_api.state.pageviews] == ["control"]
    fake_api.reset()
    assert fake_api.state.pageviews == []
