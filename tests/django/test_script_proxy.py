"""``GOALTRACK["SCRIPT_PROXY"]``: goaltrack's middleware answers the proxy's paths before any
view (no urls.py entry), sync and async; ``{% goaltrack_script %}`` points there; the checks
``goaltrack.W103`` and ``goaltrack.E103``. What the proxy forwards is tested in
tests/core/test_script_proxy_sync.py, under gunicorn in tests/system/test_script_proxy_servers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.template import Context, Template
from django.test import AsyncClient, Client

from goaltrack.django.checks import check_settings
from tests.support.keys import DATAFAST_KEY
from tests.support.script_tags import TRACKING_ID
from tests.support.script_upstream import SCRIPT, Recorder, recording_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given")


@pytest.fixture
def recorder(settings: Any) -> Iterator[Recorder]:
    with recording_upstream() as recorder:
        settings.GOALTRACK = {
            "API_KEY": DATAFAST_KEY,
            "API_URL": recorder.url,  # plain HTTP on loopback: proxied as the fake API is
            "MODE": "disabled",
            "TRACKING_ID": TRACKING_ID,
            "SCRIPT_PROXY": True,
            "SCRIPT_PROXY_PREFIX": "/stats/",
        }
        yield recorder


def test_the_middleware_serves_the_script_and_forwards_events(recorder: Recorder) -> None:
    client = Client()
    script = client.get("/stats/script.js")
    assert (script.status_code, script.content) == (200, SCRIPT)
    assert script["Cache-Control"] == "public, max-age=3600"
    client.cookies["sessionid"] = "site-secret"
    event = client.post("/stats/events", b'{"type":"pageview"}', content_type="application/json")
    assert event.status_code == 202
    wait_until(lambda: len(recorder.events) == 1, what="the event forwarded")
    headers, body = recorder.events[0]
    assert body == b'{"type":"pageview"}'
    assert "cookie" not in headers
    assert client.get("/stats/other").status_code == 404  # not the proxy's: the app's


@pytest.mark.anyio
async def test_the_async_stack_too(recorder: Recorder) -> None:
    response = await AsyncClient().get("/stats/script.js")
    assert (response.status_code, response.content) == (200, SCRIPT)


def test_the_tag_points_at_the_proxy(recorder: Recorder, settings: Any) -> None:
    settings.TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates"}]
    tag = Template("{% load goaltrack %}{% goaltrack_script %}").render(Context({}))
    assert 'src="/stats/script.js"' in tag
    assert 'data-api-url="/stats/events"' in tag


def test_off_by_default(settings: Any) -> None:
    settings.GOALTRACK = {"API_KEY": DATAFAST_KEY, "MODE": "disabled"}
    assert Client().get("/_goaltrack/script.js").status_code == 404
    assert not [m for m in check_settings() if m.id in ("goaltrack.W103", "goaltrack.E103")]


def test_checks(settings: Any) -> None:
    settings.GOALTRACK = {"API_KEY": "k", "PROVIDER": "faurya", "SCRIPT_PROXY": True}
    settings.MIDDLEWARE = []
    ids = {message.id for message in check_settings()}
    assert {"goaltrack.W103", "goaltrack.E103"} <= ids
