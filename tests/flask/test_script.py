"""The ``goaltrack_script()`` Jinja global ``GoalTrack(app)`` installs: the script tag from the
app's ``GOALTRACK_*`` config, marked safe, with call-time overrides."""

from __future__ import annotations

import logging

import pytest
from flask import Flask, render_template_string
from markupsafe import Markup

from goaltrack.flask import GoalTrack
from tests.support.flask_apps import new_app
from tests.support.keys import DATAFAST_KEY
from tests.support.script_tags import FAKE_SCRIPT, HOSTILE_ID, TRACKING_ID

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given")


def render(app: Flask, text: str, **context: object) -> str:
    with app.test_request_context("/"):
        return render_template_string(text, **context)


def test_the_tag_from_the_apps_config(apps: list[Flask]) -> None:
    app = new_app(
        apps,
        GOALTRACK_API_KEY=DATAFAST_KEY,
        GOALTRACK_MODE="disabled",
        GOALTRACK_TRACKING_ID=TRACKING_ID,
        GOALTRACK_DOMAIN="example.com",
    )
    GoalTrack(app)
    assert render(app, "{{ goaltrack_script() }}") == (
        f'<script defer data-website-id="{TRACKING_ID}" data-domain="example.com" '
        'src="https://datafa.st/js/script.js"></script>'
    )
    with app.app_context():
        assert isinstance(app.jinja_env.globals["goaltrack_script"](), Markup)


def test_escaped_once_with_overrides(apps: list[Flask]) -> None:
    app = new_app(apps, GOALTRACK_MODE="disabled", GOALTRACK_TRACKING_ID=HOSTILE_ID)
    GoalTrack(app)
    html = render(app, "{{ goaltrack_script(nonce=n, src=src) }}", n="abc", src=FAKE_SCRIPT)
    assert html.count("<script") == 1
    assert "&quot;&gt;&lt;script&gt;" in html
    assert "&amp;" not in html
    assert ' nonce="abc"' in html
    assert f' src="{FAKE_SCRIPT}"' in html


def test_the_environment_and_the_extensions_options(
    apps: list[Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_TRACKING_ID", TRACKING_ID)
    app = new_app(apps, GOALTRACK_MODE="disabled")
    GoalTrack(app, domain="shop.example")
    html = render(app, "{{ goaltrack_script() }}")
    assert f'data-website-id="{TRACKING_ID}"' in html
    assert 'data-domain="shop.example"' in html


def test_without_a_tracking_id_nothing_and_one_warning(
    apps: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = new_app(apps, GOALTRACK_MODE="disabled")
    GoalTrack(app)
    caplog.set_level(logging.WARNING, logger="goaltrack")
    assert render(app, "{{ goaltrack_script() }}{{ goaltrack_script() }}") == ""
    assert len([r for r in caplog.records if "tracking id" in r.getMessage()]) == 1
