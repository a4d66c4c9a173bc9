"""``GOALTRACK_SCRIPT_PROXY``: ``GoalTrack(app)`` puts the script proxy in front of the app and
points ``goaltrack_script()`` at it; off by default. What the proxy forwards is tested in
tests/core/test_script_proxy_sync.py, under gunicorn in tests/system/test_script_proxy_servers.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask, render_template_string

from goaltrack import InvalidConfiguration
from goaltrack.flask import GoalTrack
from goaltrack.script_proxy_sync import ScriptProxyWSGI
from tests.support.flask_apps import new_app
from tests.support.keys import DATAFAST_KEY
from tests.support.script_tags import TRACKING_ID
from tests.support.script_upstream import SCRIPT, Recorder, recording_upstream
from tests.support.threaded import serve_wsgi
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_upstream() as recorder:
        yield recorder


def proxied_app(apps: list[Flask], api_url: str, **config: object) -> Flask:
    app = new_app(
        apps,
        GOALTRACK_API_KEY=DATAFAST_KEY,
        GOALTRACK_API_URL=api_url,
        GOALTRACK_MODE="disabled",
        GOALTRACK_TRACKING_ID=TRACKING_ID,
        GOALTRACK_SCRIPT_PROXY="1",
        **config,
    )
    app.add_url_rule("/page", "page", lambda: render_template_string("{{ goaltrack_script() }}"))
    GoalTrack(app)
    return app


def test_the_proxy_serves_and_forwards_and_the_tag_points_at_it(
    apps: list[Flask], recorder: Recorder
) -> None:
    app = proxied_app(apps, recorder.url, GOALTRACK_SCRIPT_PROXY_PREFIX="/stats")
    with serve_wsgi(app) as url:
        tag = httpx.get(url + "/page").text
        assert 'src="/stats/script.js"' in tag
        assert 'data-api-url="/stats/events"' in tag
        assert httpx.get(url + "/stats/script.js").content == SCRIPT
        response = httpx.post(
            url + "/stats/events", content=b"{}", headers={"Cookie": "session=secret"}
        )
        assert response.status_code == 202
        wait_until(lambda: len(recorder.events) == 1, what="the event forwarded")
        assert "cookie" not in recorder.events[0][0]
        assert httpx.get(url + "/_goaltrack/script.js").status_code == 404  # moved


def test_off_by_default(apps: list[Flask], recorder: Recorder) -> None:
    app = new_app(apps, GOALTRACK_MODE="disabled", GOALTRACK_TRACKING_ID=TRACKING_ID)
    GoalTrack(app)
    assert not isinstance(app.wsgi_app, ScriptProxyWSGI)
    with app.test_request_context("/"):
        assert "/_goaltrack/" not in render_template_string("{{ goaltrack_script() }}")
    assert app.test_client().get("/_goaltrack/script.js").status_code == 404
    assert recorder.script_hits == 0


def test_a_provider_without_known_urls(apps: list[Flask], caplog: pytest.LogCaptureFixture) -> None:
    faurya = {"GOALTRACK_PROVIDER": "faurya", "GOALTRACK_SCRIPT_PROXY": True}
    with pytest.raises(InvalidConfiguration, match="unknown"):
        GoalTrack(new_app(apps, GOALTRACK_MODE="disabled", TESTING=True, **faurya))
    caplog.set_level(logging.ERROR, logger="goaltrack")
    app = new_app(apps, GOALTRACK_MODE="disabled", **faurya)
    GoalTrack(app)  # production: served without the proxy, said once
    assert not isinstance(app.wsgi_app, ScriptProxyWSGI)
    assert any("script proxy cannot run" in r.getMessage() for r in caplog.records)
