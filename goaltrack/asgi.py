"""The ASGI adapter: one pure ASGI middleware for Starlette, FastAPI and any other ASGI app.

This module owns :class:`GoalTrackMiddleware` (visitor from the raw ``Cookie`` header once per
HTTP request, lifespan flush), :class:`RequestGoals` (the request's tracker bound to its visitor),
:func:`track_goal` (call or decorator), the FastAPI dependency :func:`goal_tracker` /
``GoalTrackerDep``, and the optional blinker signals ``goal_delivered`` / ``goal_failed`` /
``goal_dropped``.

Nothing here needs Starlette: the middleware speaks plain ASGI, ``track_goal`` takes anything
with a ``.scope`` (a Starlette/FastAPI ``Request``) or a raw scope, and only ``GoalTrackerDep``
imports FastAPI, on first use.

Which tracker the middleware uses:

- ``tracker=``: that one;
- else, when any tracker argument is given (``api_key``, ``provider``, ``api_url``,
  ``website_id``, hooks, options): a tracker of its own, built from those arguments with the
  ``GOALTRACK_*`` environment variables filling in what is not given;
- else (``GoalTrackMiddleware(app)``): the process-wide tracker of ``goaltrack.configure()`` /
  ``GOALTRACK_*``, looked up per request so that ``configure()`` may run after the app is built.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, overload

from goaltrack.cookies import HeaderReader, Visitor, header_reader
from goaltrack.delivery import DeliveryResult
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.integrations import _current_visitor as _bound_visitor
from goaltrack.integrations import is_bot, is_success, precheck_goal_name
from goaltrack.providers import Provider
from goaltrack.tracker import GoalTracker, get_tracker
from goaltrack.transports.base import DeliveryHook, DropHook, FailureHook

if TYPE_CHECKING:
    from typing import Annotated

    from blinker import NamedSignal
    from fastapi import Depends

__all__ = [
    "GoalTrackMiddleware",
    "GoalTrackerDep",
    "RequestGoals",
    "current_goals",
    "goal_delivered",
    "goal_dropped",
    "goal_failed",
    "goal_tracker",
    "signal_hooks",
    "track_goal",
]

logger = logging.getLogger("goaltrack.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Loose on purpose: frameworks type their scope differently (Django: ``dict[str, Any]``).
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Metadata = Mapping[str, MetadataValue]
#: ``metadata=`` of the decorator: a mapping, or ``callable(result, *args, **kwargs)``.
DecoratorMetadata = Metadata | Callable[..., Metadata | None] | None

F = TypeVar("F", bound=Callable[..., Any])

#: The scope key marking a request the middleware handles; its value is the RequestGoals.
SCOPE_KEY = "goaltrack"
#: Where the visitor is published for the app: ``scope["state"][STATE_KEY]``
#: (``request.state.goaltrack_visitor`` in Starlette).
STATE_KEY = "goaltrack_visitor"

# ---- signals (optional) --------------------------------------------------------------------

goal_delivered: NamedSignal | None
goal_failed: NamedSignal | None
goal_dropped: NamedSignal | None
try:
    from blinker import Namespace
except ImportError:  # blinker is optional: the plain callables still work
    goal_delivered = goal_failed = goal_dropped = None
else:
    _signals = Namespace()
    # Receivers run in the delivery worker thread: keep them quick; exceptions are logged.
    # Called as receiver(goal, result=DeliveryResult) or receiver(goal, reason=str).
    goal_delivered = _signals.signal("goaltrack.goal-delivered")
    goal_failed = _signals.signal("goaltrack.goal-failed")
    goal_dropped = _signals.signal("goaltrack.goal-dropped")


def signal_hooks(
    *,
    on_delivery: DeliveryHook | None = None,
    on_failure: FailureHook | None = None,
    on_drop: DropHook | None = None,
) -> dict[str, Callable[..., object]]:
    """Tracker hooks that call the given callables, then send the blinker signals.

    The middleware installs them on the trackers it builds. For a tracker of your own:
    ``goaltrack.configure(**signal_hooks())`` or ``GoalTracker(key, **signal_hooks())``.
    """

    def delivered(goal: Goal, result: DeliveryResult) -> None:
        if on_delivery is not None:
            on_delivery(goal, result)
        if goal_delivered is not None:
            goal_delivered.send(goal, result=result)

    def failed(goal: Goal, result: DeliveryResult) -> None:
        if on_failure is not None:
            on_failure(goal, result)
        if goal_failed is not None:
            goal_failed.send(goal, result=result)

    def dropped(goal: Goal, reason: str) -> None:
        if on_drop is not None:
            on_drop(goal, reason)
        if goal_dropped is not None:
            goal_dropped.send(goal, reason=reason)

    return {"on_delivery": delivered, "on_failure": failed, "on_drop": dropped}


@functools.lru_cache(maxsize=4096)
def _is_bot(user_agent: bytes) -> bool:
    # Keyed on the raw header, so a User-Agent seen before is not even decoded (the core's
    # is_bot has its own cache, keyed on text).
    return is_bot(user_agent.decode("latin-1"))


# ---- the request's goals ---------------------------------------------------------------------


class RequestGoals:
    """The tracker bound to one request's visitor: what ``GoalTrackerDep`` hands an endpoint.

    ``track`` never waits for the network; it raises :class:`goaltrack.InvalidGoal` for a goal
    the provider would refuse, and returns False when nothing was sent (a bot, or no visitor
    cookie for a provider that needs one).
    """

    __slots__ = ("bot", "scope", "tracked", "tracker", "visitor")

    def __init__(
        self, tracker: GoalTracker, visitor: Visitor | None, bot: bool, scope: Scope | None
    ) -> None:
        self.tracker = tracker
        self.visitor = visitor
        self.bot = bot
        self.scope = scope
        self.tracked = 0

    def track(
        self,
        name: str,
        metadata: Metadata | None = None,
        *,
        description: str | None = None,
        timezone: str | None = None,
    ) -> bool:
        """Record goal *name* for this request's visitor; True if it was queued for sending."""
        tracker = self.tracker
        if self.bot:
            # Still validated, so that a bad name fails in development whoever the client is.
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
        sent = tracker.track_visitor(
            self.visitor, name, metadata=metadata, description=description, timezone=timezone
        )
        if sent:
            self.tracked += 1
        return sent

    def __repr__(self) -> str:
        return f"<RequestGoals visitor={self.visitor!r} bot={self.bot} tracked={self.tracked}>"


_current_goals: ContextVar[RequestGoals | None] = ContextVar("goaltrack_request", default=None)


def current_goals() -> RequestGoals | None:
    """The :class:`RequestGoals` of the HTTP request being handled, or None outside one."""
    return _current_goals.get()


def _request_goals(request_or_scope: Any) -> RequestGoals:
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
    """Pure ASGI middleware: binds each HTTP request's visitor and flushes goals at shutdown.

    ``app.add_middleware(GoalTrackMiddleware, api_key=..., provider="flowsery")`` or
    ``app = GoalTrackMiddleware(app, api_key=...)``. Websocket scopes pass through untouched;
    responses are never wrapped.

    ``skip_bots``: requests from known crawlers track nothing. ``flush_at_request_end``: wait
    (at most the tracker's ``shutdown_timeout``) after a request that tracked goals until they are
    delivered, for platforms that freeze the process between requests. ``on_delivery`` /
    ``on_failure`` / ``on_drop`` and any other ``GoalTracker`` option configure the tracker the
    middleware builds.
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
        skip_bots: bool = True,
        flush_at_request_end: bool = False,
        **tracker_options: Any,
    ) -> None:
        self.app = app
        self.skip_bots = skip_bots
        self._reader: HeaderReader | None = None  # the tracker's provider's, built on first use
        self.flush_at_request_end = flush_at_request_end
        tracker_args: dict[str, Any] = {
            name: value
            for name, value in (
                ("api_key", api_key),
                ("provider", provider),
                ("api_url", api_url),
                ("website_id", website_id),
            )
            if value is not None
        }
        if tracker is not None:
            if tracker_args or tracker_options:
                given = ", ".join(sorted([*tracker_args, *tracker_options]))
                raise TypeError(
                    f"GoalTrackMiddleware: pass either tracker= or tracker arguments ({given})"
                )
            self._tracker: GoalTracker | None = tracker
        elif tracker_args or tracker_options:
            hooks = signal_hooks(
                on_delivery=tracker_options.pop("on_delivery", None),
                on_failure=tracker_options.pop("on_failure", None),
                on_drop=tracker_options.pop("on_drop", None),
            )
            self._tracker = GoalTracker.from_env(**tracker_args, **tracker_options, **hooks)
        else:
            self._tracker = None  # the process-wide one, looked up per request

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
            and _is_bot(user_agent)
        )
        if bot:
            visitor = None
        goals = RequestGoals(tracker, visitor, bot, scope)
        scope[SCOPE_KEY] = goals
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = visitor

        # The ContextVars themselves, not bind_visitor() / unbind_visitor(): one call less each.
        visitor_token = _bound_visitor.set(visitor)
        goals_token = _current_goals.set(goals)
        try:
            await self.app(scope, receive, send)
        finally:
            _current_goals.reset(goals_token)
            _bound_visitor.reset(visitor_token)
            # scope -> goals -> scope is a cycle: break it so the request is freed at once,
            # not by the garbage collector.
            goals.scope = None
        if self.flush_at_request_end and goals.tracked:
            await self._flush(tracker, "the end of the request")

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
                await self._flush(self.tracker, "shutdown")
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
                await self._flush(self.tracker, "shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _startup(self) -> None:
        # Resolving the process-wide tracker here surfaces configuration errors at startup.
        tracker = self.tracker
        logger.debug("goaltrack ready: %r", tracker)

    async def _flush(self, tracker: GoalTracker, when: str) -> None:
        timeout = tracker.options.shutdown_timeout
        try:
            flushed = await tracker.aflush(timeout)
        except Exception:
            logger.exception("goaltrack: flushing goals at %s failed", when)
            return
        if not flushed:
            logger.warning(
                "goaltrack: %d goal(s) still pending after %g s at %s",
                tracker.stats.pending,
                timeout,
                when,
            )


# ---- track_goal: a call or a decorator -------------------------------------------------------


@overload
def track_goal(
    name: str,
    /,
    *,
    metadata: DecoratorMetadata = None,
    description: str | None = None,
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
    status code, 200 by default), never when it raises. ``metadata`` may be a callable,
    called as ``metadata(result, *args, **kwargs)`` with the endpoint's return value and
    arguments. The name is checked at decoration time; an invalid goal at request time is logged,
    never turned into an error response.
    """
    if isinstance(request_or_scope, str):
        if name is not None or timezone is not None:
            raise TypeError(
                "track_goal(name, ...) is the decorator form: use track_goal(request, name, ...)"
            )
        return _goal_decorator(request_or_scope, metadata, description)
    return _request_goals(request_or_scope).track(
        name, metadata, description=description, timezone=timezone
    )


def _goal_decorator(
    name: str, metadata: DecoratorMetadata, description: str | None
) -> Callable[[F], F]:
    precheck_goal_name(name)

    def decorator(endpoint: F) -> F:
        if inspect.iscoroutinefunction(endpoint):

            @functools.wraps(endpoint)
            async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = await endpoint(*args, **kwargs)
                _track_result(name, metadata, description, result, args, kwargs)
                return result

            wrapper: Callable[..., Any] = async_endpoint
        else:

            @functools.wraps(endpoint)
            def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
                result = endpoint(*args, **kwargs)
                _track_result(name, metadata, description, result, args, kwargs)
                return result

            wrapper = sync_endpoint
        # FastAPI reads the parameters (and so the OpenAPI schema) from the signature.
        wrapper.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def _track_result(
    name: str,
    metadata: DecoratorMetadata,
    description: str | None,
    result: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    goals = _current_goals.get()
    if goals is None:
        logger.warning(
            "goaltrack: %r not tracked: the request did not pass through GoalTrackMiddleware",
            name,
        )
        return
    if not is_success(_status_of(result, kwargs, goals.scope)):
        return
    resolved = metadata(result, *args, **kwargs) if callable(metadata) else metadata
    try:
        goals.track(name, resolved, description=description)
    except InvalidGoal:
        logger.exception("goaltrack: goal %r from a decorated endpoint is invalid", name)


def _status_of(result: Any, kwargs: Mapping[str, Any], scope: Scope | None) -> int:
    status = getattr(result, "status_code", None)
    if isinstance(status, int):
        return status
    # A FastAPI endpoint returning data may have set the status on its `response: Response`.
    responses = sys.modules.get("starlette.responses")
    if responses is not None:
        for value in kwargs.values():
            if isinstance(value, responses.Response) and isinstance(value.status_code, int):
                return value.status_code
    route = scope.get("route") if scope is not None else None
    route_status = getattr(route, "status_code", None)
    return route_status if isinstance(route_status, int) else 200


# ---- FastAPI dependency ------------------------------------------------------------------------


async def goal_tracker() -> RequestGoals:
    """FastAPI dependency: ``goals: RequestGoals = Depends(goal_tracker)`` or ``GoalTrackerDep``.

    Async on purpose: FastAPI runs sync dependencies in its thread pool.
    """
    goals = _current_goals.get()
    if goals is None:
        raise RuntimeError(
            "goaltrack: goal_tracker needs GoalTrackMiddleware: "
            "app.add_middleware(GoalTrackMiddleware, ...)"
        )
    return goals


if TYPE_CHECKING:
    GoalTrackerDep = Annotated[RequestGoals, Depends(goal_tracker)]
else:

    def __getattr__(name: str) -> Any:
        if name == "GoalTrackerDep":
            try:
                from fastapi import Depends
            except ImportError as exc:
                raise ImportError(
                    "goaltrack.asgi.GoalTrackerDep needs FastAPI: pip install fastapi"
                ) from exc
            from typing import Annotated

            dependency = Annotated[RequestGoals, Depends(goal_tracker)]
            globals()[name] = dependency
            return dependency
        raise AttributeError(f"module 'goaltrack.asgi' has no attribute {name!r}")
