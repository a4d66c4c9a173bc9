"""Flask apps made by a test, each closed (its tracker with it) when the test ends."""

from __future__ import annotations

from flask import Flask


def new_app(apps: list[Flask], **config: object) -> Flask:
    """A Flask app with *config*, added to the test's ``apps`` (closed after it)."""
    app = Flask(f"goaltrack_test_app_{len(apps)}")
    app.config.update(config)
    apps.append(app)
    return app
