"""Signals both ways (goaltrack's signals out, any Django signal in) and goals at commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal
from django.test import Client, RequestFactory

from goaltrack import DeliveryResult, Goal, InvalidGoal, Visitor, get_tracker
from goaltrack.context import bind_visitor, unbind_visitor
from goaltrack.django import connect_goal
from goaltrack.django.signals import goal_delivered, goal_dropped, goal_failed, goal_tracked
from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.models import Signup
from tests.support.django_app.support import BROWSER_UA, goaltrack_setting

# settings.GOALTRACK points at the fake API for every test here
pytestmark = pytest.mark.usefixtures("api")


class Received:
    """Records what a signal sent, and from which thread."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.done = threading.Event()

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        self.calls.append({"sender": sender, "thread": threading.current_thread(), **kwargs})
        self.done.set()


@pytest.fixture
def received() -> Iterator[dict[str, Received]]:
    receivers = {
        "tracked": Received(),
        "delivered": Received(),
        "failed": Received(),
        "dropped": Received(),
    }
    signals = {
        "tracked": goal_tracked,
        "delivered": goal_delivered,
        "failed": goal_failed,
        "dropped": goal_dropped,
    }
    for key, signal in signals.items():
        signal.connect(receivers[key])
    yield receivers
    for key, signal in signals.items():
        signal.disconnect(receivers[key])


# -- goaltrack's signals -------------------------------------------------------------------------


def test_goal_tracked_and_delivered(
    browser: Client, visitor_id: str, received: dict[str, Received]
) -> None:
    browser.get("/helper/?plan=pro")
    [tracked] = received["tracked"].calls
    assert tracked["sender"] is get_tracker()  # the tracker, as in every adapter
    assert tracked["thread"] is threading.current_thread()
    assert (tracked["name"], tracked["visitor"], tracked["metadata"]) == (
        "signup",
        Visitor(visitor_id, None),
        {"plan": "pro"},
    )
    assert tracked["request"].path == "/helper/"
    assert received["delivered"].done.wait(10)
    [delivered] = received["delivered"].calls
    assert delivered["thread"] is not threading.current_thread()  # the worker thread
    assert isinstance(delivered["goal"], Goal)
    assert delivered["goal"].name == "signup"
    assert isinstance(delivered["result"], DeliveryResult)
    assert delivered["result"].event_id
    assert received["failed"].calls == []


def test_goal_failed_when_the_api_refuses(
    api: FakeAPIServer, received: dict[str, Received]
) -> None:
    client = Client(HTTP_USER_AGENT=BROWSER_UA)
    client.cookies["datafast_visitor_id"] = "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21"  # no pageview
    client.get("/helper/")
    assert received["failed"].done.wait(10)
    [failed] = received["failed"].calls
    assert failed["result"].status == 404
    assert failed["reason"] == failed["result"].reason
    assert received["delivered"].calls == []


def test_goal_dropped_when_the_queue_is_full(
    api: FakeAPIServer, settings: Any, visitor_id: str, received: dict[str, Received]
) -> None:
    settings.GOALTRACK = goaltrack_setting(api, MAX_QUEUE_SIZE=1, MAX_IN_FLIGHT=1)
    api.set_faults(latency_ms=300)  # keeps the only worker busy while the queue fills
    tracker = get_tracker()
    for _ in range(3):
        tracker.track("signup", visitor_id=visitor_id)
    assert received["dropped"].done.wait(10)
    dropped = received["dropped"].calls[0]
    assert dropped["sender"] is tracker
    assert dropped["goal"].name == "signup"
    assert "full" in dropped["reason"]
    assert tracker.flush(10)
    assert received["failed"].calls == []  # a drop is not a failure any more


def test_a_raising_receiver_does_not_stop_delivery(
    api: FakeAPIServer, browser: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    goal_delivered.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            browser.get("/helper/")
            browser.get("/helper/?plan=second")
            assert len(api.wait_for_goals(2)) == 2
            assert get_tracker().flush(10)
    finally:
        goal_delivered.disconnect(broken)
    assert "raised" in caplog.text


# -- any signal into a goal ----------------------------------------------------------------------


@pytest.mark.django_db
def test_connect_goal_post_save_uses_the_current_visitor(
    api: FakeAPIServer, browser: Client, visitor_id: str
) -> None:
    receiver = connect_goal(
        post_save,
        "signup_row",
        sender=Signup,
        metadata=lambda sender, instance, **kwargs: {"plan": instance.plan},
        when=lambda sender, created, **kwargs: created,
    )
    try:
        assert browser.post("/create-signup/", {"email": "a@example.com", "plan": "pro"})
        Signup.objects.filter(email="a@example.com").update(plan="team")  # no post_save
        signup = Signup.objects.get(email="a@example.com")
        signup.save()  # not created: skipped by when=
        [goal] = api.wait_for_goals(1)
        assert get_tracker().flush(10)
    finally:
        assert post_save.disconnect(receiver, sender=Signup)
    assert len(api.goals) == 1
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup_row",
        visitor_id,
        {"plan": "pro"},
    )


def test_connect_goal_finds_the_request_in_the_signal(api: FakeAPIServer, visitor_id: str) -> None:
    signal = Signal()
    connect_goal(signal, "upgraded", metadata={"via": "signal"})
    request = RequestFactory().get(
        "/", HTTP_COOKIE=f"datafast_visitor_id={visitor_id}", HTTP_USER_AGENT=BROWSER_UA
    )
    signal.send(sender=None, request=request)
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "upgraded",
        visitor_id,
        {"via": "signal"},
    )


def test_connect_goal_outside_a_request_is_silent_for_datafast(api: FakeAPIServer) -> None:
    signal = Signal()
    connect_goal(signal, "nightly")
    [(_, result)] = signal.send(sender=None)
    assert result is None
    assert get_tracker().flush(10)
    assert api.goals == []


def test_connect_goal_uses_a_bound_visitor_outside_middleware(
    api: FakeAPIServer, visitor_id: str
) -> None:
    signal = Signal()
    connect_goal(signal, "from_task")
    token = bind_visitor(Visitor(visitor_id, None))
    try:
        signal.send(sender=None)
    finally:
        unbind_visitor(token)
    assert api.wait_for_goals(1)[0]["visitor_id"] == visitor_id


def test_connect_goal_checks_the_name_now() -> None:
    with pytest.raises(InvalidGoal):
        connect_goal(Signal(), "Not Valid!")


def test_connect_goal_logs_bad_metadata(visitor_id: str, caplog: pytest.LogCaptureFixture) -> None:
    signal = Signal()
    connect_goal(signal, "bad_meta", metadata=lambda sender, **kwargs: {"Bad Key": 1})
    token = bind_visitor(Visitor(visitor_id, None))
    try:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            signal.send(sender=None)  # does not raise
    finally:
        unbind_visitor(token)
    assert "'bad_meta' from a signal was not tracked" in caplog.text


@pytest.mark.django_db
def test_auth_goals_setting(
    api: FakeAPIServer, settings: Any, browser: Client, visitor_id: str
) -> None:
    User.objects.create_user("ada", password="lovelace-1815")
    settings.GOALTRACK = goaltrack_setting(api, AUTH_GOALS=True)
    assert browser.post("/login/", {"username": "ada", "password": "wrong"}).status_code == 401
    assert (
        browser.post("/login/", {"username": "ada", "password": "lovelace-1815"}).status_code == 302
    )
    [goal] = api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"]) == ("login", visitor_id)

    settings.GOALTRACK = goaltrack_setting(api, AUTH_GOALS={"user_login_failed": "login_failed"})
    browser.post("/login/", {"username": "ada", "password": "lovelace-1815"})  # not mapped now
    browser.post("/login/", {"username": "ada", "password": "wrong"})
    api.wait_for_goals(2)
    assert get_tracker().flush(10)
    assert [g["name"] for g in api.goals] == ["login", "login_failed"]


@pytest.mark.django_db
def test_auth_goals_are_off_by_default(api: FakeAPIServer, browser: Client) -> None:
    User.objects.create_user("ada", password="lovelace-1815")
    browser.post("/login/", {"username": "ada", "password": "lovelace-1815"})
    browser.get("/helper/?plan=sentinel")
    api.wait_for_goals(1)
    assert get_tracker().flush(10)
    assert [g["name"] for g in api.goals] == ["signup"]


# -- goals at commit -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_on_commit_sends_after_commit_and_not_after_a_rollback(
    api: FakeAPIServer, browser: Client
) -> None:
    assert browser.post("/signup/", {"email": "gone@example.com", "fail": "1"}).status_code == 409
    assert not Signup.objects.filter(email="gone@example.com").exists()
    assert browser.post("/signup/", {"email": "kept@example.com"}).status_code == 201
    [goal] = api.wait_for_goals(1)
    assert get_tracker().flush(10)
    assert len(api.goals) == 1
    assert (goal["name"], goal["metadata"]) == ("signup", {"source": "form"})


@pytest.mark.django_db(transaction=True)
def test_on_commit_setting(api: FakeAPIServer, settings: Any, browser: Client) -> None:
    settings.GOALTRACK = goaltrack_setting(api, ON_COMMIT=True)
    with transaction.atomic():
        browser.get("/helper/?plan=rolled")
        transaction.set_rollback(True)
    with transaction.atomic():
        browser.get("/helper/?plan=committed")
        assert get_tracker().flush(10)
        assert api.goals == []  # still waiting for the commit
    [goal] = api.wait_for_goals(1)
    assert goal["metadata"] == {"plan": "committed"}


@pytest.mark.django_db
def test_on_commit_with_capture_on_commit_callbacks(
    api: FakeAPIServer, browser: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        browser.post("/signup/", {"email": "later@example.com"})
    assert len(callbacks) == 1
    assert get_tracker().flush(10)
    assert api.goals == []
    callbacks[0]()
    assert api.wait_for_goals(1)[0]["name"] == "signup"


@pytest.mark.django_db
def test_on_commit_still_validates_now(rf: Any) -> None:
    from goaltrack.django import track_goal

    with pytest.raises(InvalidGoal):
        track_goal(rf.get("/"), "Not Valid!", on_commit=True)
    assert track_goal(rf.get("/"), "cookieless", on_commit=True) is False
