"""Tracking from Flask views: the request's goals, ``track_goal``, ``connect_goal``.

The rules are the core's (:mod:`goaltrack.context`, :mod:`goaltrack.decorator`); this module is
Flask's glue: the app's adapter in ``app.extensions``, each request's goals in
``request.environ["goaltrack"]`` (bound for :func:`goaltrack.context.current_visitor` by a WSGI
middleware), and the decorator above or below ``@app.route``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from blinker import ANY, Signal
from flask import Flask, current_app, has_app_context, has_request_context
from flask import request as current_request
from flask.wrappers import Request, Response

from goaltrack import adapter, context
from goaltrack.context import Metadata, bind_visitor, goals_outside_a_request, unbind_visitor
from goaltrack.decorator import (
    BLINKER_SIGNAL_ARGUMENTS,
    GoalSpec,
    MetadataArg,
    view_arguments,
    wrap_view,
)
from goaltrack.payments import Amount, PaymentOptions
from goaltrack.providers import Provider

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from typing_extensions import Unpack

__all__ = [
    "ADAPTER_KEY",
    "ENVIRON_KEY",
    "VisitorMiddleware",
    "adapter_of",
    "connect_goal",
    "track_goal",
    "track_payment",
]

#: The app's :class:`~goaltrack.adapter.Adapter` (its tracker, options and signals).
ADAPTER_KEY = "goaltrack.adapter"
#: Where a request's :class:`~goaltrack.context.RequestGoals` lives: ``request.environ[...]``.
ENVIRON_KEY = "goaltrack"

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def adapter_of(app: Flask | None = None) -> adapter.Adapter:
    if app is None:
        if not has_app_context():
            raise RuntimeError(
                "goaltrack.flask needs an app context to find the tracker: call it inside a "
                "request, a CLI command or `with app.app_context():`"
            )
        app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return cast(adapter.Adapter, app.extensions[ADAPTER_KEY])
    except KeyError:
        raise RuntimeError(
            f"goaltrack is not set up on the Flask app {app.name!r}: did you call "
            "GoalTrack(app) or goaltrack.init_app(app)?"
        ) from None


# -- the state of each request ----------------------------------------------------------------


class _RequestGoals(context.RequestGoals):
    """A Flask request's goals; its ``request`` is the current Flask request."""

    __slots__ = ()

    @property
    def request(self) -> Request | None:
        if not has_request_context():
            return None
        return cast(Request, current_request._get_current_object())  # type: ignore[attr-defined]

    def describe(self) -> str:
        return current_request.path if has_request_context() else ""


def _goals_of(request: Request) -> context.RequestGoals:
    """*request*'s goals: as the middleware left them, else made now (and kept)."""
    environ = request.environ
    goals = environ.get(ENVIRON_KEY)
    if goals is None:
        app_adapter = adapter_of()
        goals = environ[ENVIRON_KEY] = _RequestGoals(
            app_adapter,
            app_adapter.tracker.provider,
            environ.get("HTTP_COOKIE"),
            environ.get("HTTP_USER_AGENT"),
        )
    return cast(context.RequestGoals, goals)


class VisitorMiddleware:
    """Wraps ``app.wsgi_app``: binds the request's goals, flushes at its end if asked to.

    A WSGI middleware rather than before/teardown_request hooks because it costs a fraction of
    them, and every request pays for it (see bench/bench_flask.py). Requests carrying the
    provider's cookie get their goals bound for :func:`current_visitor` for the whole request,
    teardown included (the cookies are read only if someone asks). With
    ``flush_at_request_end``, or on a serverless platform, a request that tracked goals waits for
    them before its response goes out.

    On the first request it also wraps the views that ``@track_goal`` placed above
    ``@app.route`` marked (Flask refuses new routes after that, so none are missed).
    """

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        app_adapter: adapter.Adapter,
        view_functions: dict[str, Callable[..., Any]],
    ) -> None:
        self.wsgi_app = wsgi_app
        self.adapter = app_adapter
        self.provider: Provider = app_adapter.tracker.provider
        self._cookie_names = (self.provider.visitor_cookie, self.provider.session_cookie or "")
        self._view_functions = view_functions
        self._views_checked = False
        self._views_lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._views_checked:
            self._wrap_marked_views()
        header = environ.get("HTTP_COOKIE")
        visitor_cookie, session_cookie = self._cookie_names
        if header and (visitor_cookie in header or (session_cookie and session_cookie in header)):
            goals = environ[ENVIRON_KEY] = _RequestGoals(
                self.adapter, self.provider, header, environ.get("HTTP_USER_AGENT")
            )
            binding = bind_visitor(goals)
            try:
                response = self.wsgi_app(environ, start_response)
            finally:
                unbind_visitor(binding)
        else:
            response = self.wsgi_app(environ, start_response)
        request_goals: context.RequestGoals | None = environ.get(ENVIRON_KEY)
        if request_goals is not None and request_goals.tracked:
            self.adapter.flush_after(request_goals, environ)
        return response

    def _wrap_marked_views(self) -> None:
        with self._views_lock:
            if self._views_checked:
                return
            for endpoint, view in list(self._view_functions.items()):
                marks: tuple[GoalSpec, ...] = getattr(view, _MARKS, ())
                for spec in marks:
                    view = _wrap(view, spec)
                if marks:
                    vars(view).pop(_MARKS, None)  # copied by functools.wraps; already handled
                    self._view_functions[endpoint] = view
            self._views_checked = True


# -- tracking now, or a decorator ---------------------------------------------------------------


@overload
def track_goal(
    name: str,
    /,
    *,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
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
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
) -> bool | Callable[[ViewFunc], ViewFunc]:
    """Track a goal now, or decorate a view to track one when it converts.

    ``track_goal(request, "signup", {"plan": "pro"})`` validates and queues the goal for the
    request's visitor, never waiting for the network. It returns False, sending nothing, for a
    bot, for a visitor without the provider's cookie, and for an invalid goal when the tracker
    is not strict (logged at ERROR; strict, as in debug or testing, raises
    :class:`~goaltrack.InvalidGoal`).

    ``@track_goal("signup")`` tracks after the view answered a POST, PUT, PATCH or DELETE
    (``methods=`` changes that) with a status below 400, never when it raised, and only if
    ``when`` (if given) returns true: ``when=lambda response: response.status_code == 302``
    counts the redirect after a successful form POST, not the form re-rendered with errors.
    ``metadata`` is a mapping or a callable; it and ``when`` get the arguments they declare by
    name: ``request``, ``response`` and the view's arguments. Anything failing at request time
    is logged, and the response is left alone. The name, and the names the callables declare,
    are checked when applied.
    """
    if isinstance(request_or_name, str):
        if name is not None:
            raise TypeError(
                "use @track_goal(name, metadata=...) on views, or track_goal(request, name, "
                "metadata) in them"
            )
        return _decorator(
            GoalSpec(request_or_name, metadata, description, timezone, methods=methods, when=when)
        )
    if callable(request_or_name) and not isinstance(request_or_name, Request):
        raise TypeError('@track_goal needs a goal name: write @track_goal("signup")')
    if name is None:
        raise TypeError("track_goal(request, name, metadata) needs a goal name")
    return _goals_of(request_or_name).track(
        name, metadata, description=description, timezone=timezone
    )


def track_payment(
    request: Request,
    amount: Amount,
    currency: str,
    transaction_id: str,
    /,
    **options: Unpack[PaymentOptions],
) -> bool:
    """Track a payment for the visitor making *request*, or for ``visitor_id=`` when given.

    In a payment provider's webhook (no visitor cookie) pass the visitor id captured at
    checkout. Validated now (an invalid payment follows the strict rule, like a goal), queued,
    never waiting for the network. The arguments are
    :meth:`goaltrack.GoalTracker.track_payment`'s.
    """
    return _goals_of(request).track_payment(amount, currency, transaction_id, **options)


#: Goals asked for by decorators placed *above* ``@app.route``: the route registered the
#: function before they wrapped it, so the middleware wraps it on the first request instead.
_MARKS = "_goaltrack_goals"


def _decorator(spec: GoalSpec) -> Callable[[ViewFunc], ViewFunc]:
    def decorate(view: ViewFunc) -> ViewFunc:
        checked = spec.with_arguments(
            view_arguments(view, {"request", "response"}), f"@track_goal({spec.name!r})"
        )
        wrapper = _wrap(view, checked)
        # Marked after functools.wraps copied the view's attributes: the wrapper tracks by
        # itself and must carry no marks. The whole __wrapped__ chain is marked so that
        # stacked decorators above the route all reach the registered function.
        target: object = view
        while target is not None:
            try:
                setattr(target, _MARKS, (*getattr(target, _MARKS, ()), checked))
            except (AttributeError, TypeError):
                break  # a bound method or builtin: cannot have been registered as is
            target = getattr(target, "__wrapped__", None)
        return cast(ViewFunc, wrapper)

    return decorate


def _wrap(view: Callable[..., Any], spec: GoalSpec) -> Callable[..., Any]:
    # An async view's goal too is only queued: the tracker's worker delivers it, not a task on
    # the view's loop (Flask's async support ends the loop, and its tasks, with the view).
    def track_response(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response:
        response = current_app.make_response(result)
        request = cast(Request, current_request._get_current_object())  # type: ignore[attr-defined]
        spec.track_after_view(
            lambda: _goals_of(request),
            request.method,
            response.status_code,
            {**kwargs, "request": request, "response": response},
        )
        return response

    return wrap_view(view, track_response)


# -- signals into goals -----------------------------------------------------------------------


def connect_goal(
    signal: Signal,
    name: str,
    *,
    sender: object = None,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
    when: Callable[..., object] | None = None,
) -> Callable[..., None]:
    """Track *name* whenever *signal* is sent (e.g. flask-login's ``user_logged_in``).

    The goal goes to the current app's tracker (or the sender's, when the sender is a Flask app
    with goaltrack and no app context is active), for the current request's visitor or the
    bound one. ``metadata`` is a mapping or a callable; ``when``, a callable, can skip a send;
    both get the signal's keyword arguments by name, those they declare (``metadata=lambda
    user: {...}`` on flask-login's ``user_logged_in``), the sender only as ``sender``. For
    Flask's and flask-login's signals a callable declaring a name the signal never sends is a
    TypeError now. Problems at send time are logged, never raised into the code that sent the
    signal. Returns the receiver, to pass to ``signal.disconnect`` if need be.
    """
    return GoalSpec(name, metadata, description, timezone, when=when).connect(
        signal,
        _goals_for_signal,
        BLINKER_SIGNAL_ARGUMENTS,
        sender=ANY if sender is None else sender,
    )


def _goals_for_signal(sender: object, kwargs: Any) -> context.RequestGoals | None:
    if has_request_context() and ADAPTER_KEY in current_app.extensions:
        return _goals_of(cast(Request, current_request._get_current_object()))  # type: ignore[attr-defined]
    if has_app_context():
        app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    elif isinstance(sender, Flask):
        app = sender
    else:
        return None
    app_adapter = app.extensions.get(ADAPTER_KEY)
    return None if app_adapter is None else goals_outside_a_request(app_adapter)
