"""The Flask extension: ``GoalTrack(app)`` / ``init_app``, ``track_goal``, ``connect_goal``.

This package is Flask's glue to the core's contract (:mod:`goaltrack.adapter`). This module
owns the extension: the ``GOALTRACK_*`` config (:mod:`goaltrack.flask.config`) read at
``init_app`` into one :class:`~goaltrack.GoalTracker` per app (``app.extensions["goaltrack"]``),
the request middleware and the CLI registered. Tracking from views is
:mod:`goaltrack.flask.tracking`, the signals :mod:`goaltrack.flask.signals`, the
``flask goaltrack`` commands :mod:`goaltrack.flask.cli`.
"""

from __future__ import annotations

from typing import Any

try:
    import blinker  # noqa: F401
    from flask import Flask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "goaltrack.flask needs Flask and blinker: pip install 'goaltrack[flask]'"
    ) from exc

from goaltrack import adapter
from goaltrack.adapter import OPTIONS, current_visitor
from goaltrack.config import configuration_problems
from goaltrack.delivery import InvalidConfiguration
from goaltrack.flask.cli import goaltrack_cli
from goaltrack.flask.config import CONFIG_DEFAULTS, config_key, settings_of
from goaltrack.flask.signals import goal_delivered, goal_dropped, goal_failed, goal_tracked, signals
from goaltrack.flask.tracking import (
    ADAPTER_KEY,
    VisitorMiddleware,
    adapter_of,
    connect_goal,
    track_goal,
)
from goaltrack.tracker import GoalTracker

__all__ = [
    "CONFIG_DEFAULTS",
    "GoalTrack",
    "connect_goal",
    "current_visitor",
    "get_tracker",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracked",
    "track_goal",
]

EXTENSION_KEY = "goaltrack"


class GoalTrack:
    """Records goals from a Flask app: ``GoalTrack(app)``, or ``GoalTrack()`` + ``init_app(app)``.

    Keyword *options* are defaults for the ``GOALTRACK_*`` config keys, in lowercase without
    the prefix (``GoalTrack(mode="sync", skip_bots=False)``); the app's config wins. Nothing is
    stored on the extension: each app gets its own tracker in ``app.extensions["goaltrack"]``.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        unknown = [name for name in options if name not in OPTIONS]
        if unknown:
            raise TypeError(
                f"unknown GoalTrack option(s): {', '.join(unknown)}; known: {', '.join(OPTIONS)}"
            )
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build *app*'s tracker from its config; register the request hooks and the CLI.

        Configuration is read here, once: set the ``GOALTRACK_*`` keys before calling it.
        Raises :class:`~goaltrack.InvalidConfiguration` for a configuration that cannot work
        (unknown provider, malformed key, account token without website id, plain http to a
        remote host, a value that is not of its option's type), and RuntimeError if the
        extension is already registered on *app*.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "goaltrack is already registered on this Flask app: call GoalTrack(app) or "
                "init_app(app) once per app"
            )
        for name, default in OPTIONS.items():
            app.config.setdefault(config_key(name), self.options.get(name, default))
        settings = settings_of(app)
        # Stored back typed, so that reading the config later agrees with the tracker.
        typed = {**settings.tracker_kwargs, **settings.hooks}
        typed.update(
            skip_bots=settings.skip_bots, flush_at_request_end=settings.flush_at_request_end
        )
        app.config.update({config_key(name): value for name, value in typed.items()})
        given = settings.tracker_kwargs
        errors = [
            problem
            for problem in configuration_problems(
                api_key=given.get("api_key"),
                provider=given.get("provider"),
                api_url=given.get("api_url"),
                website_id=given.get("website_id"),
            )
            if problem.level == "error"
        ]
        if errors:
            raise InvalidConfiguration(
                "goaltrack: invalid Flask configuration: " + "; ".join(map(str, errors))
            )
        app_signals = signals.with_sender(app)
        tracker = GoalTracker(**given, **app_signals.tracker_hooks(settings.hooks))
        app.extensions[EXTENSION_KEY] = tracker
        app.extensions[ADAPTER_KEY] = adapter.Adapter(
            app_signals,
            tracker,
            skip_bots=settings.skip_bots,
            flush_at_request_end=settings.flush_at_request_end,
        )
        app.wsgi_app = VisitorMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, app.extensions[ADAPTER_KEY], app.view_functions
        )
        app.cli.add_command(goaltrack_cli)

    @property
    def tracker(self) -> GoalTracker:
        """The current app's tracker (needs an app context)."""
        return get_tracker()


def get_tracker(app: Flask | None = None) -> GoalTracker:
    """*app*'s tracker (the current app's by default), with a clear error if there is none."""
    return adapter_of(app).tracker
