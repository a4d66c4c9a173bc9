"""The Flask extension: ``GoalTrack(app)`` / ``init_app``, ``track_goal``, ``connect_goal``.

This package is Flask's glue to the core's contract (:mod:`goaltrack.adapter`). This module
owns the extension: the ``GOALTRACK_*`` config (:mod:`goaltrack.flask.config`), then the
``GOALTRACK_*`` environment variables, read at ``init_app`` into one
:class:`~goaltrack.GoalTracker` per app (``app.extensions["goaltrack"]``, built by
:func:`goaltrack.startup.build_tracker`), the request middleware and the CLI registered,
the ``goaltrack_script()`` Jinja global (the provider's script tag), and with
``GOALTRACK_SCRIPT_PROXY`` the first-party script proxy (:class:`goaltrack.script_proxy_sync.
ScriptProxyWSGI` around ``app.wsgi_app``). Tracking from views
is :mod:`goaltrack.flask.tracking`, the signals :mod:`goaltrack.flask.signals`, the ``flask
goaltrack`` commands :mod:`goaltrack.flask.cli`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    import blinker  # noqa: F401
    from flask import Flask
    from markupsafe import Markup
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "goaltrack.flask needs Flask and blinker: pip install 'goaltrack[flask]'"
    ) from exc

from goaltrack import adapter
from goaltrack.context import current_visitor
from goaltrack.delivery import InvalidConfiguration
from goaltrack.flask.cli import goaltrack_cli, loading_for_goaltrack_command
from goaltrack.flask.config import CONFIG_DEFAULTS, VALUES_KEY, config_key, read_values
from goaltrack.flask.signals import (
    goal_delivered,
    goal_dropped,
    goal_failed,
    goal_tracked,
    payment_delivered,
    payment_dropped,
    payment_failed,
    payment_tracked,
    signals,
)
from goaltrack.flask.tracking import (
    ADAPTER_KEY,
    VisitorMiddleware,
    adapter_of,
    connect_goal,
    track_goal,
    track_payment,
)
from goaltrack.options import OPTIONS
from goaltrack.script_proxy import tag_attributes
from goaltrack.script_proxy_sync import ScriptProxyWSGI, proxy_for
from goaltrack.script_tag import script_tag
from goaltrack.startup import build_tracker
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
    "payment_delivered",
    "payment_dropped",
    "payment_failed",
    "payment_tracked",
    "track_goal",
    "track_payment",
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

        Configuration is read here, once: the ``GOALTRACK_*`` config keys, then the options
        given to :class:`GoalTrack`, then the ``GOALTRACK_*`` environment variables (the names
        the other adapters read); set the config before calling it. A configuration that cannot
        work (unknown provider, malformed key, account token without website id, plain http to
        a remote host, a value that is not of its option's type) raises
        :class:`~goaltrack.InvalidConfiguration` when the app is in debug or testing mode;
        otherwise it is logged once and goals are validated, not sent (an outbox that cannot be
        opened: goals are delivered from memory). ``flask goaltrack ...`` commands always load
        the app, to report it. Raises RuntimeError if the extension is already registered on
        *app*.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "goaltrack is already registered on this Flask app: call GoalTrack(app) or "
                "init_app(app) once per app"
            )
        values = read_values(app, self.options)
        for_command = loading_for_goaltrack_command()
        development = (app.debug or app.testing) and not for_command
        setup = build_tracker(
            values,
            development=development,
            source="the app's GOALTRACK_* config",
            check_command="flask goaltrack check",
            label=config_key,
            environment=False,  # read above, under the same names
            log=not for_command,  # the command reports it
        )
        if development and setup.error is not None:
            setup.tracker.close(0)
            raise setup.error
        settings = setup.settings
        try:
            proxy = proxy_for(setup.tracker, settings, development=development)
        except InvalidConfiguration:
            setup.tracker.close(0)
            raise
        # What was read, for ``flask goaltrack check`` to agree with the tracker; the app's
        # config stays as the app set it.
        app.extensions[VALUES_KEY] = values
        tracker = setup.tracker
        app.extensions[EXTENSION_KEY] = tracker
        app.extensions[ADAPTER_KEY] = adapter.Adapter(
            signals,
            tracker,
            skip_bots=settings.skip_bots,
            flush_at_request_end=settings.flush_at_request_end,
        )
        app.wsgi_app = VisitorMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, app.extensions[ADAPTER_KEY], app.view_functions
        )
        if proxy is not None:
            app.wsgi_app = ScriptProxyWSGI(  # type: ignore[method-assign]
                app.wsgi_app, settings.script_proxy_prefix, lambda: proxy
            )
        app.cli.add_command(goaltrack_cli)
        tag = {"tracking_id": settings.tracking_id, "domain": settings.domain}
        if proxy is not None:
            tag.update(tag_attributes(settings.script_proxy_prefix))
        app.jinja_env.globals["goaltrack_script"] = _script_global(
            tracker.provider, tracker.api_url, tag
        )

    @property
    def tracker(self) -> GoalTracker:
        """The current app's tracker (needs an app context)."""
        return get_tracker()


def _script_global(
    provider: object, api_url: str, tag: dict[str, str | None]
) -> Callable[..., Markup]:
    """The ``goaltrack_script()`` Jinja global: :func:`goaltrack.script_tag` with the app's
    ``GOALTRACK_PROVIDER``, ``GOALTRACK_API_URL`` (the bundled fake API's stand-in script when
    goals go there), ``GOALTRACK_TRACKING_ID`` and ``GOALTRACK_DOMAIN``, and the script proxy's
    ``src`` and ``data-api-url`` when ``GOALTRACK_SCRIPT_PROXY`` is on; keyword arguments
    override them (``goaltrack_script(nonce=csp_nonce)``)."""

    def goaltrack_script(**overrides: Any) -> Markup:
        values: dict[str, Any] = {"provider": provider, "api_url": api_url, **tag, **overrides}
        return Markup(script_tag(**values))  # noqa: S704 - every value is escaped by script_tag

    return goaltrack_script


def get_tracker(app: Flask | None = None) -> GoalTracker:
    """The tracker goals tracked for *app* (the current app by default) go through, and the
    sender of its signals; a clear error if goaltrack is not registered on it."""
    return adapter_of(app).tracker
