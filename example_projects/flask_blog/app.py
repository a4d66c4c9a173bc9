"""The blog's app factory: configuration from the environment, goaltrack, the blueprint.

    flask --app example_projects.flask_blog.app run          # from the repository root

With no ``GOALTRACK_API_KEY`` in the environment the factory starts goaltrack's bundled fake API
on 127.0.0.1 and plays the provider's tracking script (registers a pageview, sets the visitor
cookie), so the demo works offline. With ``GOALTRACK_API_KEY`` (and ``GOALTRACK_PROVIDER``,
``GOALTRACK_API_URL``, ``GOALTRACK_WEBSITE_ID``, ...) set it tracks for real. Under gunicorn:
``gunicorn 'example_projects.flask_blog.app:create_app()'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from goaltrack.flask import CONFIG_DEFAULTS, GoalTrack

from .views import blog

goaltrack = GoalTrack()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("FLASK_BLOG_SECRET_KEY", "dev-only-not-a-secret")
    # Every GOALTRACK_* variable that is set; goaltrack converts "true"/"3" to the option's type.
    app.config.update({key: os.environ[key] for key in CONFIG_DEFAULTS if os.environ.get(key)})
    # The script tag's website id ({{ goaltrack_script() }} in the pages); while goals go to the
    # fake API, the tag loads its stand-in script instead of the provider's.
    app.config.setdefault("GOALTRACK_TRACKING_ID", "dfid_example_blog")
    app.config.update(config or {})
    if not app.config.get("GOALTRACK_API_KEY"):
        start_demo_api(app)
    goaltrack.init_app(app)
    app.register_blueprint(blog)
    return app


def start_demo_api(app: Flask) -> None:
    """Point the app at the bundled fake API, started here; it lives as long as the process."""
    from goaltrack.testing import FakeAPIServer

    server = FakeAPIServer()
    server.start()
    app.logger.warning("GOALTRACK_API_KEY is not set: demo mode, goals go to %s/_fake/", server.url)
    app.config.update(
        GOALTRACK_API_KEY="df_demo_key_not_a_secret",
        GOALTRACK_PROVIDER="datafast",
        GOALTRACK_API_URL=server.api_url("datafast"),
        DEMO_FAKE_API=server,
    )
