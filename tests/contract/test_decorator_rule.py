"""The decorator counts conversions: unsafe methods answered below 400, ``methods=``, ``when=``.

Over real HTTP, for each adapter (``tests/contract/apps.py``: ``/form``, ``/form-default``,
``/download``). A form view shows its form on GET and re-renders it with an error (200) on a
POST without a title; only a POST with a title redirects (302).
"""

from __future__ import annotations

from goaltrack.testing.server import FakeAPIServer
from tests.contract.conftest import Serve
from tests.contract.test_contract import browser, nothing_delivered, visitor_cookie


def test_the_readme_pattern_counts_exactly_the_successful_submissions(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.get("/form").status_code == 200  # the form shown
        assert client.post("/form", params={"title": ""}).status_code == 200  # errors shown
        assert nothing_delivered(app, fake_api)
        for title in ("first", "second"):
            assert client.post("/form", params={"title": title}).status_code == 302
        client.get("/form")
        client.post("/form")
        [first, second] = fake_api.wait_for_goals(2)
        assert app.tracker.flush(10)
        assert app.tracker.stats.queued == 2
    assert len(fake_api.goals) == 2
    assert {first["name"], second["name"]} == {"signup"}
    assert {first["visitor_id"], second["visitor_id"]} == {visitor_id}


def test_by_default_a_get_tracks_nothing_and_a_successful_post_one_goal(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        for _ in range(3):
            assert client.get("/form-default").status_code == 200
        assert nothing_delivered(app, fake_api)
        assert client.post("/form-default", params={"title": "hello"}).status_code == 302
        [goal] = fake_api.wait_for_goals(1)
        assert goal["name"] == "signup"
        # Without when=, a POST re-rendering the form (200) counts too: the README says so.
        assert client.post("/form-default", params={"title": ""}).status_code == 200
        fake_api.wait_for_goals(2)
        assert app.tracker.flush(10)
    assert len(fake_api.goals) == 2


def test_methods_get_counts_a_download(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.get("/download").status_code == 200
        [goal] = fake_api.wait_for_goals(1)
        assert app.tracker.flush(10)
    assert goal["name"] == "download"
    assert len(fake_api.goals) == 1
