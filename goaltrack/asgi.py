"""The ASGI adapter: one pure ASGI middleware for Starlette, FastAPI and any other ASGI app.

This module is ASGI's glue to the core's contract (:mod:`goaltrack.adapter`):
:class:`GoalTrackMiddleware` (the visitor from the raw ``Cookie`` header once per HTTP request,
the flush at request end and at lifespan shutdown), :func:`track_goal` (a call on a request or
scope, or an endpoint decorator), :func:`connect_goal` and the blinker signals
``goal_tracked`` / ``goal_delivered`` / ``goal_failed`` / ``goal_dropped``. FastAPI's own part
(the dependency, its status rules) is :mod:`goaltrack.fastapi`; ``GoalTrackerDep`` is importable
from here too.

Nothing here needs Starlette: the middleware speaks plain ASGI, and ``track_goal`` takes anything
with a ``.scope`` (a Starlette/FastAPI ``Request``) or a raw scope.

Which tracker the middleware uses:

- ``tracker=``: that one;
- else, when any tracker argument is given (``api_key``, ``provider``, ``api_url``,
  ``website_id``, hooks, options): a tracker of its own, built from those arguments with the
  ``GOALTRACK_*`` environment variables filling in what is not given;
- else (``GoalTrackMiddleware(app)``): the process-wide tracker of ``goaltrack.configure()`` /
  ``GOALTRACK_*``, looked up per request so that ``configure()`` may run after the app is built
  (it sends the delivery signals when configured with ``**signal_hooks()``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

try:
    from blinker import ANY, Namespace, Signal
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("goaltrack.asgi needs blinker: pip install 'goaltrack[asgi]'") from exc

from goaltrack import adapter
from goaltrack.adapter import (
    Adapter,
    GoalSpec,
    Metadata,
    MetadataArg,
    _current_visitor,
    current_goals,
    current_visitor,
    goals_outside_a_request,
    is_bot,
    read_settings,
)
from goaltrack.cookies import HeaderReader, Visitor, header_reader
from goaltrack.fastapi import endpoint_status, goal_tracker
from goaltrack.hooks import SignalSet, send_robust_blinker
from goaltrack.providers import Provider
from goaltrack.tracker import GoalTracker, get_tracker

if TYPE_CHECKING:
    from goaltrack.fastapi import GoalTrackerDep

__all__ = [
    "GoalTrackMiddleware",
    "GoalTrackerDep",
    "RequestGoals",
    "connect_goal",
    "current_goals",
    "current_visitor",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracked",
    "goal_tracker",
    "signal_hooks",
    "track_goal",
]

logger = logging.getLogger("goaltrack")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Loose on purpose: frameworks type their scope differently (Django: ``dict[str, Any]``).
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

F = TypeVar("F", bound=Callable[..., Any])

#: The scope key marking a request the middleware handles; its value is the RequestGoals.
SCOPE_KEY = "goaltrack"
#: Where the visitor is published for the app: ``scope["state"][STATE_KEY]``
#: (``request.state.goaltrack_visitor`` in Starlette).
STATE_KEY = "goaltrack_visitor"

# ---- signals -----------------------------------------------------------------------------------

_namespace = Namespace()
# Arguments and threads as in every adapter (goaltrack.hooks); the sender is GoalTracker.
goal_tracked = _namespace.signal("goaltrack.goal-tracked")
goal_delivered = _namespace.signal("goaltrack.goal-delivered")
goal_failed = _namespace.signal("goaltrack.goal-failed")
goal_dropped = _namespace.signal("goaltrack.goal-dropped")
signals = SignalSet(
    {
        "tracked": goal_tracked,
        "delivered": goal_delivered,
        "failed": goal_failed,
        "dropped": goal_dropped,
    },
    sender=GoalTracker,
    send_robust=send_robust_blinker,
)
#: For signals sent outside a request, and goals of requests no middleware saw: the process's.
_process_adapter = Adapter(signals)


def signal_hooks(**user_hooks: Callable[..., object] | None) -> dict[str, Callable[..., object]]:
    """Tracker hooks calling the given ``on_delivery`` / ``on_failure`` / ``on_drop``, then the
    signals. The middleware installs them on the trackers it builds; for the process-wide one:
    ``goaltrack.configure(**signal_hooks())``."""
    return signals.tracker_hooks(user_hooks)


# ---- the request's goals ---------------------------------------------------------------------


class RequestGoals(adapter.RequestGoals):
    """One HTTP request's goals: what ``GoalTrackerDep`` hands an endpoint.

    ``track`` never waits for the network; it raises :class:`goaltrack.InvalidGoal` for a goal
    the provider would refuse, and returns False when nothing was sent (a bot, or no visitor
    cookie for a provider that needs one). ``request`` is the ASGI scope, while it is handled.
    """

    __slots__ = ("scope",)

    def __init__(
        self,
        request_adapter: Adapter,
        provider: Provider,
        scope: Scope,
        visitor: Visitor | None,
        bot: bool,
    ) -> None:
        super().__init__(request_adapter, provider)
        self.read_already(visitor, bot)
        self.scope: Scope | None = scope

    @property
    def request(self) -> Scope | None:
        return self.scope

    def describe(self) -> str:
        scope = self.scope
        return "" if scope is None else str(scope.get("path", ""))


def _request_goals(request_or_scope: Any) -> adapter.RequestGoals:
    scope = getattr(request_or_scope, "scope", request_or_scope)
    goals = scope.get(SCOPE_KEY) if isinstance(scope, Mapping) else None
    if goals is None:
        raise RuntimeError(
            "goaltrack: this request did not pass through GoalTrackMiddleware; add it with "
            "app.add_middleware(GoalTrackMiddleware, ...) or app = GoalTrackMiddleware(app, ...)"
        )
    return goals  # type: ignore[no-any-return]


# ---- the middleware ----------------------------------------------------------------------------


class GoalTrackMiddleware:
    """Pure ASGI middleware: binds each HTTP request's goals, flushes at request end and shutdown.

    ``app.add_middleware(GoalTrackMiddleware, api_key=..., provider="flowsery")`` or
    ``app = GoalTrackMiddleware(app, api_key=...)``. Websocket scopes pass through untouched;
    responses are never wrapped (but for ``flush_at_request_end``, which holds back the last
    chunk of a request that tracked goals until they are delivered).

    ``skip_bots`` and ``flush_at_request_end`` mean what they mean in every adapter
    (:class:`goaltrack.adapter.AdapterSettings`); ``on_delivery`` / ``on_failure`` / ``on_drop``
    and any other ``GoalTracker`` option configure the tracker the middleware builds.
    """

    def __init__(
        self,
        app: ASGIApp,
        /,
        *,
        api_key: str | None = None,
        provider: str | Provider | None = None,
        api_url: str | None = None,
        website_id: str | None = None,
        tracker: GoalTracker | None = None,
        skip_bots: bool | str = True,
        flush_at_request_end: bool | float | str = False,
        **tracker_options: Any,
    ) -> None:
        self.app = app
        self._reader: HeaderReader | None = None  # the tracker's provider's, built on first use
        account = {"api_key": api_key, "provider": provider, "api_url": api_url}
        given = {
            name: value
            for name, value in {**account, "website_id": website_id, **tracker_options}.items()
            if value is not None
        }
        settings = read_settings(
            {**given, "skip_bots": skip_bots, "flush_at_request_end": flush_at_request_end}
        )
        if tracker is not None and given:
            raise TypeError(
                "GoalTrackMiddleware: pass either tracker= or tracker arguments "
                f"({', '.join(sorted(given))})"
            )
        if tracker is None and given:
            hooks = signals.tracker_hooks(settings.hooks)
            tracker = GoalTracker.from_env(**settings.tracker_kwargs, **hooks)
        # Without a tracker of its own: the process-wide one, looked up per request.
        self.adapter = Adapter(
            signals,
            tracker,
            skip_bots=settings.skip_bots,
            flush_at_request_end=settings.flush_at_request_end,
        )
        self._tracker = tracker
        self.skip_bots = settings.skip_bots

    @property
    def tracker(self) -> GoalTracker:
        """The tracker in use: the middleware's own, or the process-wide one."""
        return self._tracker or get_tracker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http" or SCOPE_KEY in scope:
            if scope_type == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        tracker = self._tracker or get_tracker()
        cookie = user_agent = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                # HTTP/2 clients may split cookies over several headers.
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"user-agent":
                user_agent = value
        provider = tracker.provider
        visitor = None
        if cookie is not None:
            reader = self._reader
            if reader is None or reader.provider is not provider:
                reader = self._reader = header_reader(provider)
            # Encoded cookie names, id checks on the matched values only: no header decoding.
            visitor = reader.visitor(cookie)
        # Without a visitor a provider that needs one gets nothing anyway: no need to ask.
        bot = (
            self.skip_bots
            and user_agent is not None
            and (visitor is not None or not provider.visitor_required)
            and is_bot(user_agent)
        )
        if bot:
            visitor = None
        goals = RequestGoals(self.adapter, provider, scope, visitor, bot)
        scope[SCOPE_KEY] = goals
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = visitor

        # The ContextVar itself, not bind_visitor() / unbind_visitor(): one call less each.
        token = _current_visitor.set(goals)
        try:
            if self.adapter.flush_at_request_end is None:
                await self.app(scope, receive, send)
            else:
                await self._call_then_flush(goals, scope, receive, send)
        finally:
            _current_visitor.reset(token)
            # scope -> goals -> scope is a cycle: break it so the request is freed at once,
            # not by the garbage collector.
            goals.scope = None

    async def _call_then_flush(
        self, goals: RequestGoals, scope: Scope, receive: Receive, send: Send
    ) -> None:
        flushed = 0  # goals.tracked when last flushed

        async def send_after_flush(message: Message) -> None:
            nonlocal flushed
            last_chunk = message["type"] == "http.response.body" and not message.get("more_body")
            if last_chunk and goals.tracked > flushed:
                flushed = goals.tracked
                await self.adapter.aflush_after(goals)
            await send(message)

        await self.app(scope, receive, send_after_flush)
        if goals.tracked > flushed:  # tracked after the response (background tasks)
            await self.adapter.aflush_after(goals)

    # -- lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        app_speaks_lifespan = False

        async def lifespan_receive() -> Message:
            nonlocal app_speaks_lifespan
            app_speaks_lifespan = True
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._startup()
            return message

        async def lifespan_send(message: Message) -> None:
            # After the app's own shutdown code, so that goals it tracks are flushed too.
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._flush_at_shutdown()
            await send(message)

        try:
            await self.app(scope, lifespan_receive, lifespan_send)
        except Exception:
            if app_speaks_lifespan:
                raise
            # Django's ASGI handler, for one, refuses lifespan scopes.
            logger.debug(
                "the app does not handle lifespan; GoalTrackMiddleware does", exc_info=True
            )
        else:
            if app_speaks_lifespan:
                return
        await self._serve_lifespan(receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._flush_at_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _startup(self) -> None:
        # Resolving the process-wide tracker here surfaces configuration errors at startup.
        tracker = self.tracker
        logger.debug("goaltrack ready: %r", tracker)

    async def _flush_at_shutdown(self) -> None:
        tracker = self.tracker
        timeout = tracker.options.shutdown_timeout
        try:
            flushed = await tracker.aflush(timeout)
        except Exception:
            logger.exception("goaltrack: flushing goals at shutdown failed")
            return
        if not flushed:
            logger.warning(
                "goaltrack: %d goal(s) still pending after %g s at shutdown",
                tracker.stats.pending,
                timeout,
            )


# ---- track_goal: a call or a decorator -------------------------------------------------------


@overload
def track_goal(
    name: str,
    /,
    *,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
) -> Callable[[F], F]: ...


@overload
def track_goal(
    request_or_scope: Any,
    name: str,
    /,
    metadata: Metadata | None = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> bool: ...


def track_goal(
    request_or_scope: Any,
    name: Any = None,
    /,
    metadata: Any = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
) -> Any:
    """Record a goal for the request's visitor, or decorate an endpoint to record one.

    ``track_goal(request, "signup", {"plan": "pro"})`` with a Starlette/FastAPI ``Request`` or a
    raw ASGI scope: validates now (raising :class:`goaltrack.InvalidGoal`), queues, returns
    whether the goal was queued; never waits for the network.

    ``@track_goal("signup", metadata=...)`` on an async or sync endpoint: records the goal when
    the endpoint returns a response with a status below 400 (plain data counts as the route's
    status code, 200 by default), never when it raises. ``metadata`` may be a callable, called
    as ``metadata(result, *args, **kwargs)`` with the endpoint's return value and arguments, of
    which it gets only those it declares. The name is checked at decoration time; anything
    failing at request time is logged, never turned into an error response.
    """
    if isinstance(request_or_scope, str):
        if name is not None:
            raise TypeError(
                "track_goal(name, ...) is the decorator form: use track_goal(request, name, ...)"
            )
        return _endpoint_decorator(GoalSpec(request_or_scope, metadata, description, timezone))
    return _request_goals(request_or_scope).track(
        name, metadata, description=description, timezone=timezone
    )


def _endpoint_decorator(spec: GoalSpec) -> Callable[[F], F]:
    def track_result(result: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        goals = current_goals()
        scope = goals.scope if isinstance(goals, RequestGoals) else None
        status = endpoint_status(result, kwargs, scope)
        spec.track_after_view(lambda: goals, status, (result, *args), kwargs)

    def decorator(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = await endpoint(*args, **kwargs)
                track_result(result, args, kwargs)
                return result

            wrapper: Callable[..., Any] = async_endpoint
        else:

            @functools.wraps(endpoint)
            def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = endpoint(*args, **kwargs)
                track_result(result, args, kwargs)
                return result

            wrapper = sync_endpoint
        # FastAPI reads the parameters (and so the OpenAPI schema) from the signature.
        wrapper.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


# ---- signals into goals ------------------------------------------------------------------------


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
    """Track *name* whenever the blinker *signal* is sent (by *sender*, if given).

    For the visitor of the request being handled, or outside a request for the bound visitor
    with the process-wide tracker. ``metadata`` and ``when`` take the signal's sender and keyword
    arguments (those they declare). Problems are logged, never raised into the code that sent
    the signal. Returns the receiver, to pass to ``signal.disconnect`` if need be.
    """
    receiver = GoalSpec(name, metadata, description, timezone).signal_receiver(
        _goals_for_signal, when
    )
    signal.connect(receiver, sender=ANY if sender is None else sender, weak=False)
    return receiver


def _goals_for_signal(sender: object, kwargs: Any) -> adapter.RequestGoals:
    return current_goals() or goals_outside_a_request(_process_adapter)


def __getattr__(name: str) -> Any:
    if name == "GoalTrackerDep":  # needs FastAPI: built on first use, in goaltrack.fastapi
        from goaltrack import fastapi

        return fastapi.GoalTrackerDep
    raise AttributeError(f"module 'goaltrack.asgi' has no attribute {name!r}")
