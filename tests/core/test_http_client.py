"""``http_client=``: goal delivery through the application's own httpx or httpx2 client.

Against the fake API over real HTTP: the client's event hooks see every goal request (so its
proxies, TLS settings and transports are the ones used), a factory makes one client per tracker
and is closed with it while a given client never is, redirects are not followed whatever the
client says, at most 64 KiB of an answer is read, connection failures are retried as failures
that never reached the API; and the option from Django, Flask and ASGI settings by dotted path.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from goaltrack import GoalTracker, InvalidConfiguration
from goaltrack.http_client import MAX_RESPONSE_BYTES, HttpError
from goaltrack.httpx_client import HttpxPoster
from goaltrack.testing.server import FakeAPIServer
from tests.support import hooks
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.ports import free_port

httpx2 = pytest.importorskip("httpx2")
CLIENT_MODULES = [httpx, httpx2]


@pytest.fixture(autouse=True)
def _forget_sent() -> Iterator[None]:
    hooks.SENT.clear()
    yield
    hooks.SENT.clear()


@pytest.mark.parametrize("module", CLIENT_MODULES, ids=lambda m: m.__name__)
def test_goals_go_through_the_applications_client(fake_api: FakeAPIServer, module: Any) -> None:
    seen: list[str] = []
    client = module.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    visitor = fake_api.add_pageview("datafast")
    with GoalTracker(KEY, api_url=fake_api.api_url("datafast"), http_client=client) as tracker:
        for i in range(5):
            tracker.track("signup", visitor_id=visitor, metadata={"id": str(i)})
        assert tracker.flush(10)
        assert tracker.stats.delivered == 5
    assert sorted(g["metadata"]["id"] for g in fake_api.goals) == ["0", "1", "2", "3", "4"]
    assert seen == [fake_api.api_url("datafast") + "/api/v1/goals"] * 5
    assert not client.is_closed  # the application's client stays the application's
    client.close()


def test_a_factory_makes_the_client_and_closing_the_tracker_closes_it(
    fake_api: FakeAPIServer,
) -> None:
    made: list[httpx.Client] = []

    def factory() -> httpx.Client:
        made.append(hooks.recording_client())
        return made[-1]

    visitor = fake_api.add_pageview("datafast")
    tracker = GoalTracker(KEY, api_url=fake_api.api_url("datafast"), http_client=factory)
    tracker.track("signup", visitor_id=visitor)
    assert tracker.flush(10)
    tracker.close(2)
    assert len(made) == 1
    assert made[0].is_closed
    assert [method for method, _ in hooks.SENT] == ["POST"]


@pytest.mark.parametrize("module", CLIENT_MODULES, ids=lambda m: m.__name__)
def test_redirects_are_never_followed_even_if_the_client_would(module: Any) -> None:
    requests: list[str] = []

    def answer(request: Any) -> Any:
        requests.append(str(request.url))
        return module.Response(307, headers={"Location": "https://elsewhere.example/collect"})

    client = module.Client(transport=module.MockTransport(answer), follow_redirects=True)
    poster = HttpxPoster(client)
    response = poster.post("https://api.example/api/v1/goals", {"Authorization": "Bearer x"}, b"{}")
    assert response.status == 307
    assert requests == ["https://api.example/api/v1/goals"]  # the key went nowhere else


def test_at_most_64_kib_of_an_answer_is_read() -> None:
    produced = 0

    def endless() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(10_000):  # 160 MB if anyone read it all
            produced += 16_384
            yield b"x" * 16_384

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    poster = HttpxPoster(httpx.Client(transport=httpx.MockTransport(answer)))
    response = poster.post("https://api.example/api/v1/goals", {}, b"{}")
    assert response.status == 200
    assert len(response.body) == MAX_RESPONSE_BYTES
    assert produced <= MAX_RESPONSE_BYTES + 16_384


def test_failures_say_whether_the_goal_may_have_arrived() -> None:
    refused = HttpxPoster(httpx.Client())
    with pytest.raises(HttpError) as never_sent:
        refused.post(f"http://127.0.0.1:{free_port()}/api/v1/goals", {}, b"{}")
    assert never_sent.value.may_have_arrived is False

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    timing_out = HttpxPoster(httpx.Client(transport=httpx.MockTransport(slow)))
    with pytest.raises(HttpError) as maybe_sent:
        timing_out.post("https://api.example/api/v1/goals", {}, b"{}")
    assert maybe_sent.value.may_have_arrived is True


def test_a_refused_connection_through_the_users_client_is_retried_until_the_api_is_back(
    fake_api: FakeAPIServer,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        tracker = GoalTracker(
            KEY,
            api_url=fake_api.api_url("datafast"),
            http_client=hooks.recording_client,
            flush_at_exit=False,
        )
        tracker.track("signup", visitor_id=visitor)
        assert not tracker.flush(0.5)
    finally:
        fake_api.start()
    assert tracker.flush(10)
    assert tracker.stats.delivered == 1
    assert tracker.stats.possible_duplicates == 0  # refused: it never reached the API
    tracker.close(2)


def test_bad_http_client_values_are_refused_at_once() -> None:
    with pytest.raises(InvalidConfiguration, match="http_client must be"):
        GoalTracker(KEY, http_client="not a client")
    with pytest.raises(InvalidConfiguration, match="configure the proxy on http_client"):
        GoalTracker(KEY, http_client=httpx.Client(), proxy="http://proxy.example:8080")
    with pytest.raises(InvalidConfiguration, match="factory returned object, not an httpx"):
        GoalTracker(KEY, http_client=lambda: object())


# -- from each adapter's settings ------------------------------------------------------------


def test_django_http_client_setting_is_a_dotted_path_to_a_factory(
    fake_api: FakeAPIServer, settings: Any
) -> None:
    from tests.support.django_app.support import goaltrack_setting

    settings.GOALTRACK = goaltrack_setting(
        fake_api, HTTP_CLIENT="tests.support.hooks.recording_client"
    )
    tracker = importlib.import_module("goaltrack").get_tracker()
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    sent = hooks.SENT
    assert sent == [("POST", fake_api.api_url("datafast") + "/api/v1/goals")]


def test_flask_and_asgi_take_the_option_too(fake_api: FakeAPIServer) -> None:
    from flask import Flask
    from starlette.applications import Starlette

    import goaltrack.flask as goaltrack_flask
    from goaltrack.asgi import GoalTrackMiddleware
    from goaltrack.flask import GoalTrack

    app = Flask(__name__)
    app.config.update(
        GOALTRACK_API_KEY=KEY,
        GOALTRACK_API_URL=fake_api.api_url("datafast"),
        GOALTRACK_HTTP_CLIENT="tests.support.hooks:recording_client",
        GOALTRACK_FLUSH_AT_EXIT=False,
    )
    GoalTrack(app)
    with app.app_context():
        flask_tracker = goaltrack_flask.get_tracker()
    middleware = GoalTrackMiddleware(
        Starlette(),
        api_key=KEY,
        api_url=fake_api.api_url("datafast"),
        http_client=hooks.recording_client,
        flush_at_exit=False,
    )
    visitor = fake_api.add_pageview("datafast")
    for tracker in (flask_tracker, middleware.tracker):
        tracker.track("signup", visitor_id=visitor)
        assert tracker.flush(10)
        tracker.close(2)
    assert len(hooks.SENT) == 2
    assert len(fake_api.goals) == 2
