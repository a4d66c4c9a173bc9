"""Callables bind by name: connect_goal's and the decorators' ``metadata=`` and ``when=``.

A signal's callables get its keyword arguments by their names and the sender only as a
parameter named ``sender``; a callable declaring a name that can never be given is a TypeError
when ``connect_goal`` is called or the decorator applied, naming what it could take.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from django.test import Client

from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.support import BROWSER_UA, goaltrack_setting


@pytest.fixture
def receivers() -> Iterator[list[tuple[Any, Any]]]:
    connected: list[tuple[Any, Any]] = []
    yield connected
    for signal, receiver in connected:
        signal.disconnect(receiver)


@pytest.mark.django_db
def test_login_goal_with_the_signals_own_argument_names(
    fake_api: FakeAPIServer, settings: Any, receivers: list[tuple[Any, Any]]
) -> None:
    from goaltrack.django import connect_goal

    settings.GOALTRACK = goaltrack_setting(fake_api)
    visitor_id = fake_api.add_pageview("datafast")
    User.objects.create_user("ada", email="ada@example.com", password="lovelace-1815")
    receiver = connect_goal(
        user_logged_in,
        "login",
        # As Django documents the signal: no sender first. It used to get the User class.
        metadata=lambda user, request: {"username": user.username, "path": request.path},
    )
    receivers.append((user_logged_in, receiver))
    browser = Client(HTTP_USER_AGENT=BROWSER_UA)
    browser.cookies["datafast_visitor_id"] = visitor_id

    assert (
        browser.post("/login/", {"username": "ada", "password": "lovelace-1815"}).status_code == 302
    )
    [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["visitor_id"]) == ("login", visitor_id)
    assert goal["metadata"] == {"username": "ada", "path": "/login/"}


@pytest.mark.django_db
def test_sender_is_given_only_to_a_parameter_named_sender(
    fake_api: FakeAPIServer, settings: Any, receivers: list[tuple[Any, Any]]
) -> None:
    from goaltrack.django import connect_goal

    settings.GOALTRACK = goaltrack_setting(fake_api)
    visitor_id = fake_api.add_pageview("datafast")
    User.objects.create_user("ada", password="lovelace-1815")
    receiver = connect_goal(
        user_logged_in,
        "login",
        metadata=lambda request, sender, **kwargs: {
            "sender": sender.__name__,
            "keys": ",".join(sorted(kwargs)),
        },
    )
    receivers.append((user_logged_in, receiver))
    browser = Client(HTTP_USER_AGENT=BROWSER_UA)
    browser.cookies["datafast_visitor_id"] = visitor_id
    browser.post("/login/", {"username": "ada", "password": "lovelace-1815"})
    [goal] = fake_api.wait_for_goals(1)
    assert goal["metadata"] == {"sender": "User", "keys": "signal,user"}


@pytest.mark.parametrize(
    ("signal", "arguments"),
    [
        (user_logged_in, "request, sender, signal, user"),
        (user_login_failed, "credentials, request, sender, signal"),
        (post_save, "created, instance, raw, sender, signal, update_fields, using"),
    ],
    ids=["user_logged_in", "user_login_failed", "post_save"],
)
def test_an_unknown_name_is_an_error_at_connect_time_naming_the_arguments(
    signal: Any, arguments: str
) -> None:
    from goaltrack.django import connect_goal

    receivers_before = len(signal.receivers)
    with pytest.raises(TypeError) as raised:
        connect_goal(signal, "login", metadata=lambda usr: {"id": usr.pk})
    message = str(raised.value)
    assert "'usr'" in message
    assert arguments in message
    with pytest.raises(TypeError, match=r"when=.*'created_now'"):
        connect_goal(signal, "login", when=lambda created_now: created_now)
    assert len(signal.receivers) == receivers_before  # nothing was connected


def test_any_name_goes_for_a_signal_whose_arguments_are_unknown() -> None:
    from django.dispatch import Signal

    from goaltrack.django import connect_goal

    custom = Signal()
    receiver = connect_goal(custom, "custom", metadata=lambda plan, seats: {"plan": plan})
    assert custom.disconnect(receiver)


def test_blinker_known_signals_are_checked_too() -> None:
    from flask.signals import message_flashed

    from goaltrack.asgi import connect_goal as asgi_connect_goal
    from goaltrack.flask import connect_goal as flask_connect_goal

    for connect_goal in (flask_connect_goal, asgi_connect_goal):
        with pytest.raises(TypeError, match="category, message, sender"):
            connect_goal(message_flashed, "flashed", metadata=lambda msg: {"m": msg})
        receiver = connect_goal(
            message_flashed, "flashed", metadata=lambda message, category: {"c": category}
        )
        message_flashed.disconnect(receiver)


def test_decorator_callables_are_checked_when_applied() -> None:
    from goaltrack.asgi import track_goal as asgi_track_goal
    from goaltrack.django import track_goal as django_track_goal
    from goaltrack.flask import track_goal as flask_track_goal

    def view(request: Any, pk: int) -> None: ...

    for track_goal in (django_track_goal, flask_track_goal):
        decorator = track_goal("upgrade", metadata=lambda req, resp: {})
        with pytest.raises(TypeError, match=r"'req', 'resp'.*pk, request, response"):
            decorator(view)
        with pytest.raises(TypeError, match=r"when=.*'status'"):
            track_goal("upgrade", when=lambda status: status == 302)(view)
        track_goal("upgrade", metadata=lambda request, response, pk: {"pk": pk})(view)

    async def endpoint(plan: str) -> dict[str, str]:
        return {"plan": plan}

    with pytest.raises(TypeError, match=r"'pk'.*plan, request, response, result"):
        asgi_track_goal("upgrade", metadata=lambda pk: {"pk": pk})(endpoint)
    asgi_track_goal("upgrade", metadata=lambda result, plan: {"plan": plan})(endpoint)

    def any_kwargs(request: Any, **kwargs: Any) -> None: ...

    django_track_goal("upgrade", metadata=lambda anything: {})(any_kwargs)  # not provably wrong


def test_a_fastapi_endpoint_without_a_request_parameter_still_gives_request_by_name(
    fake_api: FakeAPIServer,
) -> None:
    import httpx
    from fastapi import FastAPI

    from goaltrack.asgi import GoalTrackMiddleware
    from goaltrack.asgi import track_goal as asgi_track_goal
    from tests.support.threaded import serve_asgi

    api = FastAPI()

    @api.post("/plans/{plan}")
    @asgi_track_goal(
        "upgrade",
        metadata=lambda request, plan, result: {"path": request.url.path, "plan": plan},
        when=lambda result: result["ok"],
    )
    async def upgrade(plan: str) -> dict[str, bool]:
        return {"ok": plan != "none"}

    app = GoalTrackMiddleware(
        api, api_key="df_by_name_key_0123456789", api_url=fake_api.api_url("datafast")
    )
    visitor_id = fake_api.add_pageview("datafast")
    try:
        with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as client:
            client.cookies.set("datafast_visitor_id", visitor_id)
            assert client.post("/plans/none").status_code == 200  # when= says no
            assert client.post("/plans/pro").status_code == 200
            [goal] = fake_api.wait_for_goals(1)
            assert app.tracker.flush(10)
    finally:
        app.tracker.close(5)
    assert goal["metadata"] == {"path": "/plans/pro", "plan": "pro"}
    assert len(fake_api.goals) == 1


def test_method_decorator_checks_once_and_never_raises_into_the_request(
    fake_api: FakeAPIServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory
    from django.utils.decorators import method_decorator
    from django.views import View

    from goaltrack import get_tracker
    from goaltrack.django import track_goal

    settings.GOALTRACK = goaltrack_setting(fake_api)
    visitor_id = fake_api.add_pageview("datafast")

    class Upgrade(View):
        # method_decorator applies the decorator to the method on each request.
        @method_decorator(track_goal("upgrade", metadata=lambda request, pk: {"pk": pk}))
        def post(self, request: HttpRequest, pk: int) -> HttpResponse:
            return HttpResponse("upgraded")

    class Broken(View):
        @method_decorator(track_goal("broken", metadata=lambda reqest: {}))
        def post(self, request: HttpRequest) -> HttpResponse:
            return HttpResponse("still answered")

    factory = RequestFactory(HTTP_COOKIE=f"datafast_visitor_id={visitor_id}")
    for _ in range(2):
        assert Upgrade.as_view()(factory.post("/"), pk=7).status_code == 200
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert Broken.as_view()(factory.post("/")).status_code == 200
    assert "@track_goal('broken') not applied" in caplog.text
    assert "'reqest'" in caplog.text
    goals = fake_api.wait_for_goals(2)
    assert get_tracker().flush(10)
    assert [(g["name"], g["metadata"]) for g in fake_api.goals] == [("upgrade", {"pk": "7"})] * 2
    assert len(goals) == 2
