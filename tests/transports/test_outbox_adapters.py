"""The outbox setting and command in each adapter: Django ``GOALTRACK["OUTBOX"]`` and
``manage.py goaltrack_outbox``, Flask ``GOALTRACK_OUTBOX`` and ``flask goaltrack outbox``, and the
ASGI middleware's ``outbox=`` tracker option."""

from __future__ import annotations

import contextlib
import sqlite3
from io import StringIO
from pathlib import Path

from django.core.management import call_command
from django.test import override_settings
from flask import Flask

from goaltrack.asgi import GoalTrackMiddleware
from goaltrack.django.conf import goaltrack_settings
from goaltrack.flask import GoalTrack
from goaltrack.redaction import key_fingerprint
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.outbox import OutboxTransport
from tests.support.keys import DATAFAST_KEY as KEY


def dead_letter(path: Path) -> None:
    """One dead letter, as a final failure leaves it."""
    from goaltrack import GoalTracker

    tracker = GoalTracker(KEY, api_url="http://127.0.0.1:9/datafast", outbox=str(path))
    tracker.close(0)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "INSERT INTO dead_letters (target, goal, created_at, failed_at, attempts, status,"
            " reason, provider, key_fp) VALUES ('t',"
            ' \'["datafast","signup",null,null,null,null,null]\', 0, 0, 1, 404,'
            " 'HTTP 404: visitor has no pageviews', 'datafast', ?)",
            (key_fingerprint(KEY),),
        )
        conn.commit()


def test_django_outbox_setting_and_command(tmp_path: Path, fake_api: FakeAPIServer) -> None:
    path = tmp_path / "goals.sqlite3"
    dead_letter(path)
    setting = {"API_KEY": KEY, "API_URL": fake_api.api_url("datafast"), "OUTBOX": str(path)}
    with override_settings(GOALTRACK=setting):
        assert goaltrack_settings.tracker_kwargs()["outbox"] == str(path)
        out = StringIO()
        call_command("goaltrack_outbox", "dead-letters", stdout=out)
        assert "'signup'" in out.getvalue()
        assert "HTTP 404" in out.getvalue()
        out = StringIO()
        call_command("goaltrack_outbox", "retry", stdout=out)
        assert "1 dead letter(s) moved back" in out.getvalue()
        out = StringIO()
        call_command("goaltrack_outbox", "status", stdout=out)
        assert "waiting:      1" in out.getvalue()
        assert KEY not in out.getvalue()


def test_flask_outbox_config_and_command(tmp_path: Path, fake_api: FakeAPIServer) -> None:
    path = tmp_path / "goals.sqlite3"
    dead_letter(path)
    app = Flask(__name__)
    app.config.update(
        GOALTRACK_API_KEY=KEY,
        GOALTRACK_API_URL=fake_api.api_url("datafast"),
        GOALTRACK_OUTBOX=str(path),
        GOALTRACK_FLUSH_AT_EXIT=False,
    )
    extension = GoalTrack(app)
    try:
        with app.app_context():
            assert isinstance(extension.tracker._transport, OutboxTransport)
        result = app.test_cli_runner().invoke(args=["goaltrack", "outbox", "dead-letters"])
        assert result.exit_code == 0, result.output
        assert "HTTP 404" in result.output
        refused = app.test_cli_runner().invoke(args=["goaltrack", "outbox", "purge"], input="n\n")
        assert refused.exit_code == 1  # purge asks first, as in every front end
        result = app.test_cli_runner().invoke(args=["goaltrack", "outbox", "purge", "--yes"])
        assert "1 dead letter(s) deleted" in result.output
    finally:
        with app.app_context():
            extension.tracker.close(0)


def test_asgi_outbox_option_reaches_the_tracker(tmp_path: Path, fake_api: FakeAPIServer) -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        return None

    middleware = GoalTrackMiddleware(
        app,  # type: ignore[arg-type]
        api_key=KEY,
        api_url=fake_api.api_url("datafast"),
        outbox=str(tmp_path / "goals.sqlite3"),
        flush_at_exit=False,
    )
    try:
        assert isinstance(middleware.tracker._transport, OutboxTransport)
    finally:
        middleware.tracker.close(0)
