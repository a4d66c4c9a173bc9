"""The Flask extension: ``GoalTrack(app)`` / ``init_app``, ``track_goal``, signals and CLI.

This module owns everything Flask-specific: reading ``GOALTRACK_*`` config at ``init_app`` into one
:class:`~goaltrack.GoalTracker` per app (``app.extensions["goaltrack"]``), the per-request visitor
(read once from the cookies, bound for :func:`goaltrack.integrations.current_visitor`), the
``track_goal`` helper and decorator, the blinker signals, ``connect_goal`` and the
``flask goaltrack`` commands. Validation, delivery and provider rules live in the core.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

try:
    import click
    from blinker import ANY, NamedSignal, Namespace, Signal
    from flask import (
        Flask,
        after_this_request,
        current_app,
        g,
        has_app_context,
        has_request_context,
    )
    from flask import request as current_request
    from flask.cli import AppGroup
    from flask.wrappers import Request, Response
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "goaltrack.flask needs Flask and blinker: pip install 'goaltrack[flask]'"
    ) from exc

from goaltrack import outbox_commands
from goaltrack.config import configuration_problems
from goaltrack.cookies import Visitor, visitor_from_cookies
from goaltrack.delivery import DeliveryResult, InvalidConfiguration
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.integrations import (
    MetadataArg,
    bind_visitor,
    current_visitor,
    is_bot,
    is_success,
    precheck_goal_name,
    unbind_visitor,
)
from goaltrack.providers import Provider
from goaltrack.tracker import GoalTracker, TrackerOptions

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "CONFIG_DEFAULTS",
    "GoalTrack",
    "connect_goal",
    "get_tracker",
    "goal_delivered",
    "goal_failed",
    "goal_tracked",
    "track_goal",
]

logger = logging.getLogger("goaltrack")

EXTENSION_KEY = "goaltrack"

Metadata = Mapping[str, MetadataValue]
ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])

# -- configuration ----------------------------------------------------------------------------

_TRACKER_ARGS = {"api_key": None, "provider": "datafast", "api_url": None, "website_id": None}
_ADAPTER_OPTIONS = {"skip_bots": True, "flush_at_request_end": False}
_TRACKER_OPTIONS = {f.name: f.default for f in fields(TrackerOptions) if f.default is not MISSING}

#: Every ``GOALTRACK_*`` config key the extension reads, with its default.
CONFIG_DEFAULTS: dict[str, object] = {
    f"GOALTRACK_{name.upper()}": default
    for name, default in {**_TRACKER_ARGS, **_ADAPTER_OPTIONS, **_TRACKER_OPTIONS}.items()
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: str, value: object, default: object) -> object:
    """Config loaded from the environment holds strings: turn them into the option's type."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise InvalidConfiguration(
            f"{key} must be a {type(default).__name__}, not {value!r}"
        ) from None
    return value


# -- signals ----------------------------------------------------------------------------------

_signals = Namespace()

goal_tracked = _signals.signal(
    "goaltrack-goal-tracked",
    doc="""A goal was accepted for delivery, in the request's thread.

    Sender: the Flask app. Keyword arguments: ``name``, ``visitor`` (a ``Visitor`` or None) and
    ``metadata`` (as given). Receivers run inside the request: keep them fast.""",
)
goal_delivered = _signals.signal(
    "goaltrack-goal-delivered",
    doc="""The provider recorded a goal.

    Sender: the Flask app. Keyword arguments: ``goal`` (a ``Goal``) and ``result`` (a
    ``DeliveryResult``). Sent from the delivery worker thread, outside any request or app
    context: do not use ``request``, ``g`` or ``current_app`` in receivers, use the sender.""",
)
goal_failed = _signals.signal(
    "goaltrack-goal-failed",
    doc="""A goal will never be recorded: refused by the API, out of retries, or dropped.

    Sender: the Flask app. Keyword arguments: ``goal``, ``reason`` (str) and ``result`` (a
    ``DeliveryResult``, or None when the goal was dropped without an answer from the API).
    Sent from the delivery worker thread, like ``goal_delivered``.""",
)


def _signal_hooks(app: Flask, options: dict[str, Any]) -> dict[str, Any]:
    """The tracker hooks for *app*: send our signals, then call the user's own hooks.

    The app object is captured here because the hooks run in the worker thread, where there is
    no app context to find it in.
    """
    user_on_delivery = options.get("on_delivery")
    user_on_failure = options.get("on_failure")
    user_on_drop = options.get("on_drop")

    def on_delivery(goal: Goal, result: DeliveryResult) -> None:
        _send_safely(goal_delivered, app, goal=goal, result=result)
        if user_on_delivery is not None:
            user_on_delivery(goal, result)

    def on_failure(goal: Goal, result: DeliveryResult) -> None:
        _send_safely(goal_failed, app, goal=goal, reason=result.reason, result=result)
        if user_on_failure is not None:
            user_on_failure(goal, result)

    def on_drop(goal: Goal, reason: str) -> None:
        _send_safely(goal_failed, app, goal=goal, reason=reason, result=None)
        if user_on_drop is not None:
            user_on_drop(goal, reason)

    return {"on_delivery": on_delivery, "on_failure": on_failure, "on_drop": on_drop}


def _send_safely(signal: NamedSignal, sender: object, **kwargs: Any) -> None:
    # A broken receiver must not keep the user's own hook (or the next receiver) from running.
    try:
        signal.send(sender, **kwargs)
    except Exception:
        logger.exception("goaltrack: a receiver of the %r signal raised", signal.name)


# -- the extension ----------------------------------------------------------------------------


def _config_key(option: str) -> str:
    return f"GOALTRACK_{option.upper()}"


def _option_name(config_key: str) -> str:
    return config_key.removeprefix("GOALTRACK_").lower()


class GoalTrack:
    """Records goals from a Flask app: ``GoalTrack(app)``, or ``GoalTrack()`` + ``init_app(app)``.

    Keyword *options* are defaults for the ``GOALTRACK_*`` config keys, in lowercase without
    the prefix (``GoalTrack(mode="sync", skip_bots=False)``); the app's config wins. Nothing is
    stored on the extension: each app gets its own tracker in ``app.extensions["goaltrack"]``.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        unknown = [name for name in options if _config_key(name) not in CONFIG_DEFAULTS]
        if unknown:
            known = ", ".join(_option_name(key) for key in CONFIG_DEFAULTS)
            raise TypeError(f"unknown GoalTrack option(s): {', '.join(unknown)}; known: {known}")
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build *app*'s tracker from its config; register the request hooks and the CLI.

        Configuration is read here, once: set the ``GOALTRACK_*`` keys before calling it.
        Raises :class:`~goaltrack.InvalidConfiguration` for a configuration that cannot work
        (unknown provider, malformed key, account token without website id, plain http to a
        remote host), and RuntimeError if the extension is already registered on *app*.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "goaltrack is already registered on this Flask app: call GoalTrack(app) or "
                "init_app(app) once per app"
            )
        settings = self._settings(app)
        errors = [
            problem
            for problem in configuration_problems(
                api_key=settings["api_key"],
                provider=settings["provider"],
                api_url=settings["api_url"],
                website_id=settings["website_id"],
            )
            if problem.level == "error"
        ]
        if errors:
            raise InvalidConfiguration(
                "goaltrack: invalid Flask configuration: " + "; ".join(map(str, errors))
            )
        tracker_options = {name: settings[name] for name in _TRACKER_OPTIONS}
        tracker_options.update(_signal_hooks(app, tracker_options))
        tracker = GoalTracker(
            settings["api_key"],
            provider=settings["provider"],
            api_url=settings["api_url"],
            website_id=settings["website_id"],
            **tracker_options,
        )
        app.extensions[EXTENSION_KEY] = tracker
        app.wsgi_app = _VisitorMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, tracker.provider, app.view_functions, skip_bots=settings["skip_bots"]
        )
        app.cli.add_command(goaltrack_cli)

    def _settings(self, app: Flask) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for key, default in CONFIG_DEFAULTS.items():
            name = _option_name(key)
            value = _coerce(
                key, app.config.setdefault(key, self.options.get(name, default)), default
            )
            # Stored back typed, so that reading the config later agrees with the tracker.
            app.config[key] = settings[name] = value
        return settings

    @property
    def tracker(self) -> GoalTracker:
        """The current app's tracker (needs an app context)."""
        return get_tracker()


def get_tracker(app: Flask | None = None) -> GoalTracker:
    """*app*'s tracker (the current app's by default), with a clear error if there is none."""
    return _app_and_tracker(app)[1]


def _app_and_tracker(app: Flask | None = None) -> tuple[Flask, GoalTracker]:
    if app is None:
        if not has_app_context():
            raise RuntimeError(
                "goaltrack.flask needs an app context to find the tracker: call it inside a "
                "request, a CLI command or `with app.app_context():`"
            )
        app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return app, cast(GoalTracker, app.extensions[EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            f"goaltrack is not set up on the Flask app {app.name!r}: did you call "
            "GoalTrack(app) or goaltrack.init_app(app)?"
        ) from None


# -- the visitor of each request --------------------------------------------------------------

#: Where the middleware leaves the request's visitor, for ``track_goal`` to find without
#: reading the cookies again.
ENVIRON_KEY = "goaltrack.visitor"


class _VisitorMiddleware:
    """Wraps ``app.wsgi_app``: reads the provider's cookies once, binds the visitor.

    A WSGI middleware rather than before/teardown_request hooks because it costs a fraction of
    them, and every request pays for it (see bench/bench_flask.py). The visitor is bound for
    :func:`goaltrack.integrations.current_visitor` for the whole request, teardown included,
    and left in ``environ["goaltrack.visitor"]``. Known bots get no visitor.

    On the first request it also wraps the views that ``@track_goal`` placed above
    ``@app.route`` marked (Flask refuses new routes after that, so none are missed).
    """

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        provider: Provider,
        view_functions: dict[str, Callable[..., Any]],
        *,
        skip_bots: bool,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.provider = provider
        self.skip_bots = skip_bots
        self._cookie_names = (provider.visitor_cookie, provider.session_cookie or "")
        self._view_functions = view_functions
        self._views_checked = False
        self._views_lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._views_checked:
            self._wrap_marked_views()
        header = environ.get("HTTP_COOKIE")
        if header:
            visitor_cookie, session_cookie = self._cookie_names
            if visitor_cookie in header or (session_cookie and session_cookie in header):
                visitor = visitor_from_cookies(header, self.provider)
                if visitor is not None and not (
                    self.skip_bots and is_bot(environ.get("HTTP_USER_AGENT"))
                ):
                    environ[ENVIRON_KEY] = visitor
                    binding = bind_visitor(visitor)
                    try:
                        return self.wsgi_app(environ, start_response)
                    finally:
                        unbind_visitor(binding)
        return self.wsgi_app(environ, start_response)

    def _wrap_marked_views(self) -> None:
        with self._views_lock:
            if self._views_checked:
                return
            for endpoint, view in list(self._view_functions.items()):
                marks: tuple[_GoalSpec, ...] = getattr(view, _MARKS, ())
                for spec in marks:
                    view = _wrap(view, spec)
                if marks:
                    vars(view).pop(_MARKS, None)  # copied by functools.wraps; already handled
                    self._view_functions[endpoint] = view
            self._views_checked = True


def _visitor_of(request: Request, tracker: GoalTracker) -> Visitor | None:
    """The visitor of *request*: as the middleware found it, or read from its cookies."""
    visitor = request.environ.get(ENVIRON_KEY)
    if visitor is not None:
        return cast(Visitor, visitor)
    return visitor_from_cookies(request.headers.get("Cookie"), tracker.provider)


# -- tracking ---------------------------------------------------------------------------------


def _track(
    app: Flask,
    tracker: GoalTracker,
    request: Request | None,
    name: str,
    metadata: Metadata | None,
    description: str | None,
    timezone: str | None,
) -> bool:
    """Track *name* for *request*'s visitor (or the bound visitor when there is no request)."""
    if request is not None:
        if app.config.get("GOALTRACK_SKIP_BOTS", True) and is_bot(
            request.headers.get("User-Agent")
        ):
            # Still validated, so that a bad name fails in development even when a crawler calls.
            Goal.create(
                tracker.provider,
                name,
                metadata=metadata,
                description=description,
                timezone=timezone,
                truncate_metadata=tracker.options.truncate_metadata,
                require_visitor=False,
            )
            return False
        visitor = _visitor_of(request, tracker)
    else:
        visitor = current_visitor()
    tracked = tracker.track_visitor(
        visitor, name, metadata=metadata, description=description, timezone=timezone
    )
    if tracked:
        goal_tracked.send(app, name=name, visitor=visitor, metadata=metadata)
        if request is not None and app.config.get("GOALTRACK_FLUSH_AT_REQUEST_END"):
            _flush_after_response(tracker)
    return tracked


_FLUSH_SCHEDULED = "_goaltrack_flush_scheduled"


def _flush_after_response(tracker: GoalTracker) -> None:
    """Serverless mode: deliver this request's goals once its response went out."""
    if not has_request_context() or g.get(_FLUSH_SCHEDULED):
        return
    setattr(g, _FLUSH_SCHEDULED, True)

    def flush_on_close(response: Response) -> Response:
        response.call_on_close(lambda: tracker.flush(tracker.options.shutdown_timeout))
        return response

    after_this_request(flush_on_close)


@overload
def track_goal(
    name: str,
    /,
    *,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
) -> Callable[[ViewFunc], ViewFunc]: ...


@overload
def track_goal(
    request: Request,
    name: str,
    /,
    metadata: Metadata | None = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> bool: ...


def track_goal(
    request_or_name: Request | str,
    name: str | None = None,
    /,
    metadata: Any = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> bool | Callable[[ViewFunc], ViewFunc]:
    """Track a goal now, or decorate a view to track one when it succeeds.

    ``track_goal(request, "signup", {"plan": "pro"})`` validates (raising
    :class:`~goaltrack.InvalidGoal`) and queues the goal for the request's visitor, never
    waiting for the network. It returns False, sending nothing, for a bot or for a visitor
    without the provider's cookie.

    ``@track_goal("signup")`` / ``@track_goal("signup", metadata=callable)`` tracks after the
    view returned a response below 400, never when it raised; ``metadata`` is a mapping or a
    callable taking ``(request, response)``. A goal that turns out invalid at request time is
    logged, and the response is left alone. The name is checked when the decorator is applied.
    """
    if isinstance(request_or_name, str):
        if name is not None:
            raise TypeError(
                "use @track_goal(name, metadata=...) on views, or track_goal(request, name, "
                "metadata) in them"
            )
        return _decorator(request_or_name, metadata, description, timezone)
    if callable(request_or_name) and not isinstance(request_or_name, Request):
        raise TypeError('@track_goal needs a goal name: write @track_goal("signup")')
    if name is None:
        raise TypeError("track_goal(request, name, metadata) needs a goal name")
    app, tracker = _app_and_tracker()
    return _track(app, tracker, request_or_name, name, metadata, description, timezone)


# -- the decorator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _GoalSpec:
    name: str
    metadata: MetadataArg
    description: str | None
    timezone: str | None


#: Goals asked for by decorators placed *above* ``@app.route``: the route registered the
#: function before they wrapped it, so the middleware wraps it on the first request instead.
_MARKS = "_goaltrack_goals"


def _decorator(
    name: str, metadata: MetadataArg, description: str | None, timezone: str | None
) -> Callable[[ViewFunc], ViewFunc]:
    precheck_goal_name(name)
    spec = _GoalSpec(name, metadata, description, timezone)

    def decorate(view: ViewFunc) -> ViewFunc:
        wrapper = _wrap(view, spec)
        # Marked after functools.wraps copied the view's attributes: the wrapper tracks by
        # itself and must carry no marks. The whole __wrapped__ chain is marked so that
        # stacked decorators above the route all reach the registered function.
        target: object = view
        while target is not None:
            try:
                setattr(target, _MARKS, (*getattr(target, _MARKS, ()), spec))
            except (AttributeError, TypeError):
                break  # a bound method or builtin: cannot have been registered as is
            target = getattr(target, "__wrapped__", None)
        return cast(ViewFunc, wrapper)

    return decorate


def _wrap(view: Callable[..., Any], spec: _GoalSpec) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(view):
        return _async_wrapper(view, spec)
    return _sync_wrapper(view, spec)


def _sync_wrapper(view: Callable[..., Any], spec: _GoalSpec) -> Callable[..., Any]:
    @functools.wraps(view)
    def tracking_view(*args: Any, **kwargs: Any) -> Response:
        response = current_app.make_response(view(*args, **kwargs))
        _track_response(spec, response)
        return response

    return tracking_view


def _async_wrapper(view: Callable[..., Any], spec: _GoalSpec) -> Callable[..., Any]:
    @functools.wraps(view)
    async def tracking_view(*args: Any, **kwargs: Any) -> Response:
        # Tracking only queues the goal: the tracker's worker delivers it, not a task on this
        # loop (Flask's async support ends the loop, and its tasks, when the view returns).
        response = current_app.make_response(await view(*args, **kwargs))
        _track_response(spec, response)
        return response

    return tracking_view


def _track_response(spec: _GoalSpec, response: Response) -> None:
    if not is_success(response.status_code):
        return
    request = cast(Request, current_request._get_current_object())  # type: ignore[attr-defined]
    try:
        app, tracker = _app_and_tracker()
        metadata = spec.metadata
        if callable(metadata):
            metadata = metadata(request, response)
        _track(app, tracker, request, spec.name, metadata, spec.description, spec.timezone)
    except InvalidGoal as exc:
        logger.error("goaltrack: goal %r not tracked for %s: %s", spec.name, request.path, exc)
    except Exception:
        # The view succeeded; a broken metadata callable must not turn that into an error page.
        logger.exception("goaltrack: goal %r not tracked for %s", spec.name, request.path)


# -- signals into goals -----------------------------------------------------------------------


def connect_goal(
    signal: Signal,
    name: str,
    *,
    sender: object = None,
    metadata: Metadata | Callable[..., Metadata | None] | None = None,
) -> Callable[..., None]:
    """Track *name* whenever *signal* is sent (e.g. flask-login's ``user_logged_in``).

    The goal goes to the current app's tracker (or the sender's, when the sender is a Flask app
    with goaltrack and no app context is active), for the current request's visitor or the
    bound one. ``metadata`` is a mapping, or a callable taking the signal's sender and keyword
    arguments. Problems are logged, never raised into the code that sent the signal. Returns
    the receiver, to pass to ``signal.disconnect`` if need be.
    """
    precheck_goal_name(name)

    def track_signal(signal_sender: object, **kwargs: Any) -> None:
        try:
            found = _app_and_tracker_for(signal_sender)
            if found is None:
                logger.warning(
                    "goaltrack: %r sent outside any app with goaltrack; goal %r not tracked",
                    getattr(signal, "name", signal),
                    name,
                )
                return
            goal_metadata = metadata(signal_sender, **kwargs) if callable(metadata) else metadata
            request = (
                cast(Request, current_request._get_current_object())  # type: ignore[attr-defined]
                if has_request_context()
                else None
            )
            _track(*found, request, name, goal_metadata, None, None)
        except Exception:
            logger.exception("goaltrack: goal %r not tracked for a signal", name)

    signal.connect(track_signal, sender=ANY if sender is None else sender, weak=False)
    return track_signal


def _app_and_tracker_for(signal_sender: object) -> tuple[Flask, GoalTracker] | None:
    if has_app_context():
        app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    elif isinstance(signal_sender, Flask):
        app = signal_sender
    else:
        return None
    tracker = app.extensions.get(EXTENSION_KEY)
    return None if tracker is None else (app, cast(GoalTracker, tracker))


# -- command line -----------------------------------------------------------------------------

goaltrack_cli = AppGroup("goaltrack", help="Check goaltrack's configuration and send test goals.")


@goaltrack_cli.command("check")
@click.option("--offline", is_flag=True, help="Check the configuration only, not the API.")
@click.option("--timeout", type=float, default=5.0, show_default=True)
def check_command(offline: bool, timeout: float) -> None:
    """Check the GOALTRACK_* configuration and that the API takes the key."""
    config = current_app.config
    tracker = get_tracker()
    click.echo(f"provider: {tracker.provider.name}")
    click.echo(f"API URL:  {tracker.api_url}")
    click.echo(f"API key:  {'set' if config.get('GOALTRACK_API_KEY') else 'not set'}")
    click.echo(f"mode:     {tracker.mode}")
    problems = configuration_problems(
        api_key=config.get("GOALTRACK_API_KEY"),
        provider=config.get("GOALTRACK_PROVIDER"),
        api_url=config.get("GOALTRACK_API_URL"),
        website_id=config.get("GOALTRACK_WEBSITE_ID"),
    )
    for problem in problems:
        click.echo(f"{problem.level}: {problem}")
    failed = any(problem.level == "error" for problem in problems)
    if not offline:
        reachable, explanation = tracker.check_connection(timeout)
        click.echo(f"API:      {explanation}")
        failed = failed or not reachable
    if failed:
        raise click.exceptions.Exit(1)
    click.echo("goaltrack is ready.")


@goaltrack_cli.command("send")
@click.argument("name")
@click.option("--visitor", "visitor_id", help="The visitor id (the provider's visitor cookie).")
@click.option("--session", "session_id", help="The session id, for providers that take one.")
@click.option(
    "--metadata", "metadata_pairs", multiple=True, metavar="KEY=VALUE", help="Repeatable."
)
@click.option("--timeout", type=float, default=10.0, show_default=True)
def send_command(
    name: str,
    visitor_id: str | None,
    session_id: str | None,
    metadata_pairs: tuple[str, ...],
    timeout: float,
) -> None:
    """Send one goal NAME with this app's configuration and report what the API said."""
    metadata: dict[str, MetadataValue] = {}
    for pair in metadata_pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    tracker = get_tracker()
    if tracker.mode == "disabled":
        raise click.ClickException(
            "goaltrack is disabled (no GOALTRACK_API_KEY, or GOALTRACK_MODE='disabled'): "
            "nothing can be sent"
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    outcomes: list[tuple[bool, str]] = []

    def delivered(sender: Flask, goal: Goal, result: DeliveryResult) -> None:
        outcomes.append((True, f"delivered ({result.event_id or f'HTTP {result.status}'})"))

    def failed(sender: Flask, goal: Goal, reason: str, result: DeliveryResult | None) -> None:
        outcomes.append((False, f"not recorded: {reason}"))

    try:
        with goal_delivered.connected_to(delivered, app), goal_failed.connected_to(failed, app):
            tracker.track(
                name, visitor_id=visitor_id, session_id=session_id, metadata=metadata or None
            )
            finished = tracker.flush(timeout)
    except InvalidGoal as exc:
        raise click.ClickException(str(exc)) from None
    if not outcomes:
        state = "still being retried" if not finished else "no answer"
        raise click.ClickException(f"goal {name!r}: {state} after {timeout:g} s")
    ok, message = outcomes[0]
    if not ok:
        raise click.ClickException(f"goal {name!r} {message}")
    click.echo(f"goal {name!r} {message}")


@goaltrack_cli.command("outbox")
@click.argument("action", type=click.Choice(outbox_commands.ACTIONS))
@click.option("--path", help="The outbox file (default: GOALTRACK_OUTBOX).")
@click.option("--id", "ids", multiple=True, type=int, help="retry: a dead letter's id.")
@click.option("--limit", type=int, default=50, show_default=True, help="dead-letters: how many.")
@click.option("--waiting", is_flag=True, help="purge: also delete goals not delivered yet.")
def outbox_command(
    action: str, path: str | None, ids: tuple[int, ...], limit: int, waiting: bool
) -> None:
    """The SQLite outbox: status, dead-letters, retry, purge."""
    path = path or current_app.config.get("GOALTRACK_OUTBOX")
    if not path:
        raise click.ClickException(outbox_commands.NO_PATH)
    if action == "status":
        outbox_commands.status(path, click.echo)
    elif action == "dead-letters":
        outbox_commands.dead_letters(path, click.echo, limit)
    elif action == "retry":
        outbox_commands.retry(path, click.echo, ids)
    else:
        outbox_commands.purge(path, click.echo, waiting=waiting)
