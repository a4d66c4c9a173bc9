"""The adapter contract: every case, for Django, Flask, FastAPI and Starlette, over real HTTP.

Each adapter serves the same routes (``tests/contract/apps.py``) on a loopback port, built from
the same option names, and tracks into the fake API. A case passes for every adapter or the
contract is broken.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from goaltrack import DeliveryResult, Goal, Visitor
from goaltrack.testing.server import FakeAPIServer
from tests.contract.apps import Served
from tests.contract.conftest import Serve

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def browser(
    app: Served, cookies: dict[str, str] | None = None, user_agent: str = BROWSER
) -> httpx.Client:
    return httpx.Client(
        base_url=app.url, headers={"User-Agent": user_agent}, cookies=cookies or {}, timeout=10
    )


def visitor_cookie(fake_api: FakeAPIServer) -> tuple[str, dict[str, str]]:
    visitor_id = fake_api.add_pageview("datafast")
    return visitor_id, {"datafast_visitor_id": visitor_id}


def nothing_delivered(app: Served, fake_api: FakeAPIServer) -> bool:
    """Every goal tracked so far has settled, and none reached the API."""
    return app.tracker.flush(10) and fake_api.goals == []


class Received:
    """A signal receiver that records its calls; ``raises`` makes it fail after recording."""

    def __init__(self, raises: bool = False) -> None:
        # Django's send_robust names a failing receiver by its __qualname__.
        self.__qualname__ = f"Received(raises={raises})"
        self.calls: list[dict[str, Any]] = []
        self.raises = raises
        self.called = threading.Event()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        kwargs.pop("signal", None)  # Django adds the signal itself
        self.calls.append({"sender": sender, **kwargs})
        self.called.set()
        if self.raises:
            raise RuntimeError("a receiver's bug")


@contextmanager
def receiving(signal: Any, *receivers: Received) -> Iterator[None]:
    for receiver in receivers:
        signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        for receiver in receivers:
            signal.disconnect(receiver)


def test_direct_call_tracks_for_the_cookie_visitor(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.post("/track", params={"plan": "pro"}).json() == {"queued": True}
        [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "pro"},
    )


@pytest.mark.parametrize(
    "params",
    [{"name": "Not a valid name!"}, {"name": "identify"}, {"key": "Not A Key"}],
    ids=["bad-name", "reserved-name", "bad-metadata-key"],
)
def test_direct_call_with_a_bad_goal_raises_invalid_goal(
    contract: Serve, fake_api: FakeAPIServer, params: dict[str, str]
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.post("/track", params=params).json() == {"raised": "InvalidGoal"}
        assert nothing_delivered(app, fake_api)


def test_decorated_view_tracks_only_below_400(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        for status in (400, 404, 500):
            assert client.post("/decorated", params={"status": status}).status_code == status
        assert nothing_delivered(app, fake_api)
        for status, plan in ((200, "ok"), (302, "redirect")):
            response = client.post("/decorated", params={"status": status, "plan": plan})
            assert response.status_code == status
        goals = fake_api.wait_for_goals(2)
        assert app.tracker.flush(10)
    assert sorted((g["name"], g["metadata"]["plan"]) for g in fake_api.goals) == [
        ("purchase", "ok"),
        ("purchase", "redirect"),
    ]
    assert len(goals) == 2


def test_a_view_that_raises_tracks_nothing(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.post("/decorated-raises").status_code == 500
        assert nothing_delivered(app, fake_api)


def test_a_raising_metadata_callable_is_logged_and_the_view_answers(
    contract: Serve, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            response = client.post("/metadata-raises")
        assert response.status_code == 200
        assert "done" in response.text
        assert nothing_delivered(app, fake_api)
    assert "goal 'purchase' from a decorated view was not tracked" in caplog.text


def test_metadata_callables_get_only_the_arguments_they_declare(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    # In FastAPI, the endpoint also takes a GoalTrackerDep and the Request.
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert client.post("/declared", params={"plan": "team"}).status_code == 200
        [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("declared", {"plan": "team"})


def test_connect_goal_turns_a_signal_into_a_goal(contract: Serve, fake_api: FakeAPIServer) -> None:
    visitor_id, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        assert "sent" in client.post("/signal", params={"plan": "skip"}).text  # when= says no
        assert client.post("/signal", params={"plan": "pro"}).status_code == 200
        [goal] = fake_api.wait_for_goals(1)
        assert app.tracker.flush(10)
    assert len(fake_api.goals) == 1
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "account_opened",
        visitor_id,
        {"plan": "pro"},
    )


@pytest.mark.parametrize(
    ("which", "goal"), [("when", "when_raises"), ("metadata", "metadata_raises")]
)
def test_a_raising_when_or_signal_metadata_never_reaches_the_sender(
    contract: Serve,
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    which: str,
    goal: str,
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract() as app, browser(app, cookies) as client:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            response = client.post("/signal", params={"which": which})
        assert (response.status_code, "sent" in response.text) == (200, True)
        assert nothing_delivered(app, fake_api)
    assert f"goal {goal!r} from a signal was not tracked" in caplog.text


def test_a_raising_receiver_or_hook_stops_nothing(
    contract: Serve, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_hook(goal: Goal, result: DeliveryResult) -> None:
        raise RuntimeError("a hook's bug")

    _, cookies = visitor_cookie(fake_api)
    tracked = [Received(raises=True), Received()]
    delivered = [Received(raises=True), Received()]
    with contract(on_delivery=broken_hook) as app, browser(app, cookies) as client:
        with (
            caplog.at_level(logging.ERROR, logger="goaltrack"),
            receiving(app.signals.goal_tracked, *tracked),
            receiving(app.signals.goal_delivered, *delivered),
        ):
            assert client.post("/track").json() == {"queued": True}
            assert delivered[1].called.wait(10)  # after the raising hook and receiver
        assert [g["name"] for g in fake_api.wait_for_goals(1)] == ["signup"]
    assert [len(r.calls) for r in (*tracked, *delivered)] == [1, 1, 1, 1]
    assert "of goal_tracked raised for goal 'signup'" in caplog.text
    assert "of goal_delivered raised for goal 'signup'" in caplog.text
    assert "the on_delivery hook raised for goal 'signup'" in caplog.text


def test_timezone_on_a_flowsery_goal(contract: Serve, fake_api: FakeAPIServer) -> None:
    cookies = {"_fs_vid": "vid_contract_1", "_fs_sid": "sid_contract_1"}
    with contract("flowsery") as app, browser(app, cookies) as client:
        assert client.post("/track-timezone").json() == {"queued": True}
        assert client.post("/decorated-timezone").status_code < 400
        goals = fake_api.wait_for_goals(2)
    assert sorted((g["name"], g["timezone"], g["visitor_id"]) for g in goals) == [
        ("purchase", "Europe/Paris", "vid_contract_1"),
        ("signup", "Europe/Paris", "vid_contract_1"),
    ]


@pytest.mark.parametrize("provider", ["datafast", "flowsery"])
def test_bots_get_no_goals(contract: Serve, fake_api: FakeAPIServer, provider: str) -> None:
    cookies = visitor_cookie(fake_api)[1] if provider == "datafast" else {"_fs_vid": "vid_bot"}
    with contract(provider) as app, browser(app, cookies, GOOGLEBOT) as bot:
        assert bot.post("/track").json() == {"queued": False}
        assert bot.post("/decorated").status_code == 200
        assert bot.post("/signal").status_code == 200
        # Flowsery takes goals without a visitor: a bot without cookies is skipped too.
        bot.cookies.clear()
        assert bot.post("/track").json() == {"queued": False}
        assert nothing_delivered(app, fake_api)


def test_skip_bots_off_tracks_them(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract(skip_bots="false") as app, browser(app, cookies, GOOGLEBOT) as bot:
        assert bot.post("/track").json() == {"queued": True}
        assert [g["name"] for g in fake_api.wait_for_goals(1)] == ["signup"]


def test_flush_at_request_end(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract(flush_at_request_end="true") as app, browser(app, cookies) as client:
        fake_api.set_faults(latency_ms=300)
        assert client.post("/track").json() == {"queued": True}
        # No waiting: the response came only once the goal was delivered.
        assert [g["name"] for g in fake_api.goals] == ["signup"]
        assert client.post("/decorated").status_code == 200
        assert [g["name"] for g in fake_api.goals] == ["signup", "purchase"]


def test_each_signal_with_the_documented_sender(contract: Serve, fake_api: FakeAPIServer) -> None:
    visitor_id, cookies = visitor_cookie(fake_api)
    stranger = {"datafast_visitor_id": "0b7a4c36-3f7e-4c1e-9a4e-5d1c8a3b2f10"}  # no pageview
    tracked, delivered, failed = Received(), Received(), Received()
    with contract() as app:
        signals, sender = app.signals, app.sender
        with (
            receiving(signals.goal_tracked, tracked),
            receiving(signals.goal_delivered, delivered),
            receiving(signals.goal_failed, failed),
        ):
            with browser(app, cookies) as client:
                assert client.post("/track", params={"plan": "pro"}).json() == {"queued": True}
            with browser(app, stranger) as client:
                assert client.post("/track", params={"name": "orphan"}).json() == {"queued": True}
            assert delivered.called.wait(10)
            assert failed.called.wait(10)
    assert [call["sender"] for call in tracked.calls] == [sender, sender]
    first = tracked.calls[0]
    assert (first["name"], first["visitor"], first["metadata"]) == (
        "signup",
        Visitor(visitor_id, None),
        {"plan": "pro"},
    )
    assert first["request"] is not None
    [ok] = delivered.calls
    assert (ok["sender"], ok["goal"].name, bool(ok["result"].event_id)) == (
        sender,
        "signup",
        True,
    )
    [refused] = failed.calls
    assert (refused["sender"], refused["goal"].name, refused["result"].status) == (
        sender,
        "orphan",
        404,
    )
    assert refused["reason"] == refused["result"].reason


def test_goal_dropped_when_the_queue_is_full(contract: Serve, fake_api: FakeAPIServer) -> None:
    _, cookies = visitor_cookie(fake_api)
    dropped, failed = Received(), Received()
    with contract(max_queue_size=1, max_in_flight=1) as app, browser(app, cookies) as client:
        sender = app.sender
        fake_api.set_faults(latency_ms=300)  # the only worker is busy while the queue fills
        with (
            receiving(app.signals.goal_dropped, dropped),
            receiving(app.signals.goal_failed, failed),
        ):
            response = client.post("/track-three")
            assert response.status_code == 200  # a full queue is no error for the request
            assert False in response.json()["queued"]
            assert dropped.called.wait(10)
            assert app.tracker.flush(10)
    call = dropped.calls[0]
    assert (call["sender"], call["goal"].name[:5], "full" in call["reason"]) == (
        sender,
        "goal_",
        True,
    )
    assert failed.calls == []
