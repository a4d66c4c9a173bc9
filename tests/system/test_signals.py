"""One signal surface in Django, Flask and ASGI: the same names, the tracker as sender, the same
``get_tracker``, and delivery signals from every tracker with no wiring (over real HTTP to the
fake API)."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from django.dispatch import Signal as DjangoSignal

import goaltrack
from goaltrack import GoalTracker
from goaltrack import tracker as tracker_module
from goaltrack.testing.server import FakeAPIServer
from tests.contract.apps import serve
from tests.support.threaded import serve_asgi, serve_wsgi

KEY = "df_signals_key_0123456789abcdef"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NO_PAGEVIEW = "0b7a4c36-3f7e-4c1e-9a4e-5d1c8a3b2f10"  # the fake API answers 404: a final failure
EVENTS = ("tracked", "delivered", "failed", "dropped")
ADAPTERS = ("django", "flask", "asgi")


def signals_of(adapter: str) -> ModuleType:
    return importlib.import_module(f"goaltrack.{adapter}.signals")


class Received:
    """Records each call of a signal; ``raises`` makes it fail after recording."""

    def __init__(self, raises: bool = False) -> None:
        self.__qualname__ = f"Received(raises={raises})"
        self.calls: list[dict[str, Any]] = []
        self.raises = raises
        self.arrived = threading.Condition()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        kwargs.pop("signal", None)  # Django adds the signal itself
        with self.arrived:
            self.calls.append({"sender": sender, **kwargs})
            self.arrived.notify_all()
        if self.raises:
            raise RuntimeError("receiver bug")

    def wait(self, count: int = 1, timeout: float = 10.0) -> bool:
        """True once *count* calls arrived (the delivery worker sends them), within *timeout*."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.calls) >= count, timeout)


def connected(signal: Any, receiver: Received, sender: object = None) -> Any:
    """Connect *receiver* (to *sender*'s sends only, if given) for a ``with`` block."""
    import contextlib

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        if sender is None:
            signal.connect(receiver, weak=False)
        else:
            signal.connect(receiver, sender=sender, weak=False)
        try:
            yield
        finally:
            if sender is None:
                signal.disconnect(receiver)
            else:
                signal.disconnect(receiver, sender=sender)

    return scope()


@pytest.fixture
def no_process_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process-wide tracker of this test's own, closed at its end."""
    monkeypatch.setattr(tracker_module, "_process_tracker", None)
    yield
    current = tracker_module._process_tracker
    if current is not None:
        current.close(5)


# -- names ---------------------------------------------------------------------------------------


def test_the_same_signals_under_the_same_names_in_every_adapter() -> None:
    for adapter in ADAPTERS:
        module, package = signals_of(adapter), importlib.import_module(f"goaltrack.{adapter}")
        for event in EVENTS:
            name = f"goal_{event}"
            assert name in module.__all__, (adapter, name)
            assert name in package.__all__, (adapter, name)
            assert getattr(package, name) is getattr(module, name), (adapter, name)
        assert "get_tracker" in package.__all__, adapter
    for event in EVENTS:
        # One naming scheme for blinker (Flask and ASGI); Django's are Signal objects.
        flask_signal = getattr(signals_of("flask"), f"goal_{event}")
        asgi_signal = getattr(signals_of("asgi"), f"goal_{event}")
        assert flask_signal.name == asgi_signal.name == f"goaltrack.goal-{event}"
        assert isinstance(getattr(signals_of("django"), f"goal_{event}"), DjangoSignal)
    assert not hasattr(importlib.import_module("goaltrack.asgi"), "signal_hooks")


# -- every tracker sends the delivery signals, with no wiring ------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_tracker_built_by_hand_sends_each_adapters_delivery_signals(
    adapter: str, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    module = signals_of(adapter)
    delivered, failed, broken, elsewhere = Received(), Received(), Received(raises=True), Received()
    visitor_id = fake_api.add_pageview("datafast")
    # No hooks, no adapter, no configure(): only goaltrack.GoalTracker.
    tracker = GoalTracker(KEY, api_url=fake_api.api_url("datafast"))
    other = GoalTracker(KEY, api_url=fake_api.api_url("datafast"), mode="disabled")
    try:
        with (
            caplog.at_level(logging.ERROR, logger="goaltrack"),
            connected(module.goal_delivered, broken),  # every sender; raises for each goal
            connected(module.goal_delivered, delivered, tracker),
            connected(module.goal_failed, failed, tracker),
            connected(module.goal_delivered, elsewhere, other),
        ):
            assert tracker.track("signup", visitor_id=visitor_id, metadata={"plan": "pro"})
            assert tracker.track("orphan", visitor_id=NO_PAGEVIEW)
            assert tracker.track("second", visitor_id=visitor_id)
            assert tracker.flush(10)
            assert delivered.wait(2)
            assert failed.wait(1)
            assert broken.wait(2)
    finally:
        tracker.close(5)
        other.close(0)
    assert sorted(call["goal"].name for call in delivered.calls) == ["second", "signup"]
    assert all(call["sender"] is tracker for call in delivered.calls + failed.calls)
    assert all(call["result"].event_id for call in delivered.calls)
    [refused] = failed.calls
    assert (refused["goal"].name, refused["result"].status) == ("orphan", 404)
    assert refused["reason"] == refused["result"].reason
    assert elsewhere.calls == []  # filtered by sender: another tracker's receiver hears nothing
    # The raising receiver heard both goals, was logged for each, and delivery carried on.
    assert sorted(call["goal"].name for call in broken.calls) == ["second", "signup"]
    assert "of goal_delivered raised for goal 'signup'" in caplog.text
    assert "of goal_delivered raised for goal 'second'" in caplog.text
    assert sorted(goal["name"] for goal in fake_api.goals) == ["second", "signup"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_the_process_wide_tracker_sends_them_after_the_users_hook(
    adapter: str, fake_api: FakeAPIServer, no_process_tracker: None
) -> None:
    module = signals_of(adapter)
    order: list[str] = []
    delivered = Received()
    configured = goaltrack.configure(
        KEY,
        api_url=fake_api.api_url("datafast"),
        on_delivery=lambda goal, result: order.append("hook"),
    )
    visitor_id = fake_api.add_pageview("datafast")

    def record(sender: object, **kwargs: Any) -> None:
        order.append("signal")
        delivered(sender, **kwargs)

    record.__qualname__ = "record"
    with connected(module.goal_delivered, record):  # type: ignore[arg-type]
        assert goaltrack.track("signup", visitor_id=visitor_id)
        assert goaltrack.flush(10)
        assert delivered.wait()
    [call] = delivered.calls
    assert call["sender"] is configured is goaltrack.get_tracker()
    assert order == ["hook", "signal"]


# -- get_tracker is the sender, in each adapter, under a real server -----------------------------


def test_asgi_middleware_on_the_process_tracker_sends_every_signal(
    fake_api: FakeAPIServer, no_process_tracker: None
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from goaltrack import asgi

    async def track(request: Request) -> JSONResponse:
        queued = asgi.track_goal(request, "signup")
        return JSONResponse(
            {"queued": queued, "same": asgi.get_tracker() is goaltrack.get_tracker()}
        )

    app = asgi.GoalTrackMiddleware(Starlette(routes=[Route("/track", track, methods=["POST"])]))
    # configure() after the app is built, and nothing else: no signal_hooks().
    process = goaltrack.configure(KEY, api_url=fake_api.api_url("datafast"))
    tracked, delivered = Received(), Received()
    visitor_id = fake_api.add_pageview("datafast")
    with (
        connected(asgi.goal_tracked, tracked, process),
        connected(asgi.goal_delivered, delivered, process),
        serve_asgi(app) as url,
    ):
        answer = httpx.post(
            f"{url}/track",
            headers={"User-Agent": BROWSER},
            cookies={"datafast_visitor_id": visitor_id},
            timeout=10,
        )
        assert answer.json() == {"queued": True, "same": True}
        assert delivered.wait()
    assert asgi.get_tracker() is process  # outside a request: the process-wide one
    [call] = tracked.calls
    assert (call["sender"], call["name"], call["request"] is not None) == (process, "signup", True)
    assert [call["goal"].name for call in delivered.calls] == ["signup"]


def test_flask_get_tracker_is_the_apps_tracker_and_the_sender(fake_api: FakeAPIServer) -> None:
    from flask import Flask, jsonify, request

    from goaltrack import flask as adapter

    app = Flask("signals")
    app.config.update(GOALTRACK_API_KEY=KEY, GOALTRACK_API_URL=fake_api.api_url("datafast"))
    adapter.GoalTrack(app)
    tracker = adapter.get_tracker(app)

    @app.post("/track")
    def track() -> Any:
        queued = adapter.track_goal(request, "signup")
        return jsonify(queued=queued, same=adapter.get_tracker() is tracker)

    tracked, delivered = Received(), Received()
    visitor_id = fake_api.add_pageview("datafast")
    try:
        with (
            connected(adapter.goal_tracked, tracked, tracker),
            connected(adapter.goal_delivered, delivered, tracker),
            serve_wsgi(app) as url,
        ):
            answer = httpx.post(
                f"{url}/track",
                headers={"User-Agent": BROWSER},
                cookies={"datafast_visitor_id": visitor_id},
                timeout=10,
            )
            assert answer.json() == {"queued": True, "same": True}
            assert delivered.wait()
    finally:
        tracker.close(5)
    assert [call["sender"] for call in tracked.calls + delivered.calls] == [tracker, tracker]


def test_django_get_tracker_is_the_process_tracker_and_the_sender(
    fake_api: FakeAPIServer,
) -> None:
    from goaltrack import django as adapter

    options = {"api_key": KEY, "api_url": fake_api.api_url("datafast")}
    tracked, delivered = Received(), Received()
    visitor_id = fake_api.add_pageview("datafast")
    with serve("django", options) as served:
        tracker = adapter.get_tracker()
        assert tracker is served.tracker is goaltrack.get_tracker()
        with (
            connected(adapter.goal_tracked, tracked, tracker),
            connected(adapter.goal_delivered, delivered, tracker),
        ):
            answer = httpx.post(
                f"{served.url}/track",
                headers={"User-Agent": BROWSER},
                cookies={"datafast_visitor_id": visitor_id},
                timeout=10,
            )
            assert answer.json() == {"queued": True}
            assert delivered.wait()
    assert [call["sender"] for call in tracked.calls + delivered.calls] == [tracker, tracker]
    assert tracked.calls[0]["request"].path == "/track"
