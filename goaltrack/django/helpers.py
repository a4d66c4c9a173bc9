"""Tracking from Django code: ``track_goal`` (call or decorator), ``connect_goal``, the visitor.

``track_goal(request, name, metadata)`` tracks now; ``@track_goal(name)`` tracks after a view
answers with a status below 400. Both read the visitor from the request once (the middleware
may already have done it) and hand the goal to the process-wide tracker, which only queues it.
``connect_goal(signal, name)`` turns any Django signal into a goal.
"""

from __future__ import annotations

import functools
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest

from goaltrack.cookies import Visitor, visitor_from_cookies
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.signals import goal_tracked
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.integrations import (
    MetadataArg,
    VisitorSource,
    current_visitor,
    is_bot,
    is_success,
    precheck_goal_name,
    resolve_metadata,
)
from goaltrack.providers import PROVIDERS, Provider
from goaltrack.tracker import GoalTracker, get_tracker

__all__ = ["RequestGoals", "connect_goal", "current_visitor", "request_goals", "track_goal"]

logger = logging.getLogger("goaltrack")

Metadata = Mapping[str, MetadataValue]
ViewT = TypeVar("ViewT", bound=Callable[..., Any])
#: Where the per-request state lives on ``HttpRequest`` (also ``request.goaltrack``).
REQUEST_ATTRIBUTE = "goaltrack"


class RequestGoals(VisitorSource):
    """What goaltrack knows about one request, available as ``request.goaltrack``.

    Built once per request (by the middleware, or by the first ``track_goal`` call). Cheap to
    build: the cookies and the User-Agent are read the first time ``visitor`` or ``is_bot`` is
    asked for, so a request that tracks nothing never parses them.
    """

    __slots__ = ("_cookies", "_is_bot", "_meta", "_request", "_visitor", "provider")

    def __init__(self, request: HttpRequest, provider: Provider) -> None:
        # Weak: a strong reference would make a cycle with the request, left to the garbage
        # collector on every request.
        self._request = weakref.ref(request)
        self._meta = request.META
        # Cookies Django has parsed already are cheaper to read than the raw header; which one
        # is read is decided now, as if the request were read now.
        self._cookies: Mapping[str, str] | None = request.__dict__.get("COOKIES")
        self.provider = provider
        self._is_bot: bool | None = None  # None: the request is not read yet
        self._visitor: Visitor | None = None

    @property
    def visitor(self) -> Visitor | None:
        """The provider's visitor ids from the cookies; None for cookieless visitors and bots."""
        if self._is_bot is None:
            self._read()
        return self._visitor

    @property
    def is_bot(self) -> bool:
        """True for a known crawler's User-Agent (when ``SKIP_BOTS`` is on): it tracks nothing."""
        is_bot = self._is_bot
        if is_bot is None:
            is_bot = self._read()
        return is_bot

    def _read(self) -> bool:
        meta = self._meta
        bot = goaltrack_settings.skip_bots and is_bot(meta.get("HTTP_USER_AGENT"))
        if not bot:
            cookies = self._cookies or meta.get("HTTP_COOKIE")
            if cookies:
                self._visitor = visitor_from_cookies(cookies, self.provider)
        self._is_bot = bot
        return bot

    def track(
        self,
        name: str,
        metadata: Metadata | None = None,
        *,
        description: str | None = None,
        timezone: str | None = None,
        on_commit: bool | None = None,
    ) -> bool:
        """``track_goal(request, ...)`` for this request."""
        request = self._request()
        if request is None:
            raise RuntimeError("the request this object belonged to is gone")
        return track_goal(
            request,
            name,
            metadata,
            description=description,
            timezone=timezone,
            on_commit=on_commit,
        )

    def __repr__(self) -> str:
        return f"<RequestGoals visitor={self.visitor!r} is_bot={self.is_bot!r}>"


def request_goals(request: HttpRequest, provider: Provider | None = None) -> RequestGoals:
    """The request's :class:`RequestGoals` (made on first use; it reads the request lazily)."""
    if provider is None:
        provider = get_tracker().provider
    state = request.__dict__.get(REQUEST_ATTRIBUTE)
    if state is not None and state.provider is provider:
        return state  # type: ignore[no-any-return]
    state = request.__dict__[REQUEST_ATTRIBUTE] = RequestGoals(request, provider)
    return state


# -- tracking now ------------------------------------------------------------------------------


@overload
def track_goal(
    request: HttpRequest,
    name: str,
    metadata: Metadata | None = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
    on_commit: bool | None = None,
) -> bool: ...


@overload
def track_goal(
    request: str,
    *,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
    on_commit: bool | None = None,
) -> Callable[[ViewT], ViewT]: ...


def track_goal(
    request: HttpRequest | str,
    name: str | None = None,
    metadata: MetadataArg = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
    on_commit: bool | None = None,
) -> bool | Callable[[ViewT], ViewT]:
    """Track a goal for the visitor making *request*, or decorate a view to track one.

    ``track_goal(request, "signup", {"plan": "pro"})`` validates the goal (raising
    :class:`goaltrack.InvalidGoal` for a bad name or metadata) and queues it; it returns True
    when the goal was queued (or will be, at commit), False when there is nobody to attribute it
    to (a cookieless visitor, a bot). It never waits for the network.

    ``@track_goal("signup")`` or ``@track_goal("signup", metadata=build)`` decorates a function
    view, a view method (directly or with ``method_decorator``) or a class-based view, sync or
    async. The goal is tracked after the view returns a response with a status below 400, never
    when it raises; ``build(request, response)`` returns the metadata. The name is checked when
    the decorator is applied; bad data at request time is logged, never breaks the response.

    ``on_commit=True`` (default: the ``ON_COMMIT`` setting) sends the goal only once the current
    database transaction commits, so that a rolled-back signup is not counted.
    """
    if isinstance(request, str):
        if name is not None:
            raise TypeError(
                "track_goal(name, ...) decorates a view; to track now, pass the request first: "
                "track_goal(request, name, metadata)"
            )
        return _goal_decorator(request, metadata, description, timezone, on_commit)
    if not isinstance(request, HttpRequest):
        raise TypeError(
            f"track_goal() takes an HttpRequest or a goal name first, not {type(request).__name__}"
        )
    if name is None:
        raise TypeError("track_goal(request, name, metadata): the goal name is missing")
    if metadata is not None and type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise InvalidGoal(
            "track_goal(request, ...) takes metadata as a mapping; callables are for decorators",
            field="metadata",
            rule="metadata is a flat object",
        )
    tracker = get_tracker()
    return _track_for_visitor(
        tracker,
        request_goals(request, tracker.provider),
        name,
        metadata,
        description=description,
        timezone=timezone,
        on_commit=on_commit,
        request=request,
    )


def _track_for_visitor(
    tracker: GoalTracker,
    state: RequestGoals | None,
    name: str,
    metadata: Metadata | None,
    *,
    description: str | None,
    timezone: str | None,
    on_commit: bool | None,
    request: HttpRequest | None,
) -> bool:
    visitor = state.visitor if state is not None else current_visitor()
    skip = state is not None and state.is_bot
    defer = goaltrack_settings.on_commit if on_commit is None else on_commit
    if skip or defer:
        # Validate now so that the caller gets InvalidGoal here, whatever happens later.
        Goal.create(
            tracker.provider,
            name,
            metadata=metadata,
            description=description,
            timezone=timezone,
            truncate_metadata=tracker.options.truncate_metadata,
            require_visitor=False,
        )
        if skip or (visitor is None and tracker.provider.visitor_required):
            return False
        transaction.on_commit(
            functools.partial(_send, None, visitor, name, metadata, description, timezone, None)
        )
        return True
    return _send(tracker, visitor, name, metadata, description, timezone, request)


def _send(
    tracker: GoalTracker | None,
    visitor: Visitor | None,
    name: str,
    metadata: Metadata | None,
    description: str | None,
    timezone: str | None,
    request: HttpRequest | None,
) -> bool:
    if tracker is None:
        tracker = get_tracker()  # at commit time: the tracker configured then
    sent = tracker.track_visitor(
        visitor, name, metadata=metadata, description=description, timezone=timezone
    )
    if sent and goal_tracked.receivers:
        goal_tracked.send(
            sender=GoalTracker, name=name, visitor=visitor, metadata=metadata, request=request
        )
    return sent


# -- the decorator -----------------------------------------------------------------------------


def _goal_decorator(
    name: str,
    metadata: MetadataArg,
    description: str | None,
    timezone: str | None,
    on_commit: bool | None,
) -> Callable[[ViewT], ViewT]:
    precheck_goal_name(name)
    if isinstance(metadata, Mapping):
        # Metadata rules are the same for every provider: check a literal mapping at import too.
        Goal.create(PROVIDERS["flowsery"], "check", metadata=metadata, require_visitor=False)
    elif metadata is not None and not callable(metadata):
        raise InvalidGoal(
            f"metadata must be a mapping or a callable, got {type(metadata).__name__}",
            field="metadata",
            rule="metadata is a flat object",
        )

    def track_response(args: tuple[Any, ...], response: object) -> None:
        if not is_success(getattr(response, "status_code", None)):
            return
        request = _find_request(args)
        if request is None:
            logger.error(
                "goaltrack: @track_goal(%r) found no HttpRequest in the view's arguments", name
            )
            return
        try:
            tracker = get_tracker()
            _track_for_visitor(
                tracker,
                request_goals(request, tracker.provider),
                name,
                resolve_metadata(metadata, request, response),
                description=description,
                timezone=timezone,
                on_commit=on_commit,
                request=request,
            )
        except InvalidGoal:
            # The view has done its work: a bad goal must not turn its answer into an error.
            logger.exception("goaltrack: goal %r from a decorated view was not tracked", name)

    def must_leave_event_loop() -> bool:
        # A sync tracker delivers inline, and on_commit needs the database: both block.
        defer = goaltrack_settings.on_commit if on_commit is None else on_commit
        return defer or get_tracker().mode == "sync"

    async def track_response_async(args: tuple[Any, ...], response: object) -> None:
        if must_leave_event_loop():
            await sync_to_async(track_response)(args, response)
        else:
            track_response(args, response)

    async def await_then_track(args: tuple[Any, ...], pending: Awaitable[Any]) -> Any:
        response = await pending
        await track_response_async(args, response)
        return response

    def decorate(view: ViewT) -> ViewT:
        if isinstance(view, type):
            dispatch = getattr(view, "dispatch", None)
            if dispatch is None:
                raise TypeError(f"@track_goal on a class needs a View subclass, not {view!r}")
            view_class: type[Any] = view
            view_class.dispatch = decorate(dispatch)
            return view

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                response = await view(*args, **kwargs)
                await track_response_async(args, response)
                return response

            return async_view  # type: ignore[return-value]

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            response = view(*args, **kwargs)
            if inspect.isawaitable(response):
                # dispatch() of an async class-based view returns its handler's coroutine.
                return await_then_track(args, response)
            track_response(args, response)
            return response

        return sync_view  # type: ignore[return-value]

    return decorate


def _find_request(args: tuple[Any, ...]) -> HttpRequest | None:
    # A function view gets (request, ...), a method (self, request, ...).
    for arg in args[:2]:
        if isinstance(arg, HttpRequest):
            return arg
    return None


# -- signals into goals --------------------------------------------------------------------------


def connect_goal(
    signal: Signal,
    name: str,
    sender: object = None,
    metadata: Metadata | Callable[..., Metadata | None] | None = None,
    *,
    when: Callable[..., bool] | None = None,
    on_commit: bool | None = None,
    dispatch_uid: str | None = None,
) -> Callable[..., None]:
    """Track goal *name* each time *signal* is sent (by *sender*, if given).

    The visitor is the one of the ``request`` in the signal's arguments if there is one (as for
    ``user_logged_in``), else the current visitor bound by the middleware (as for a model's
    ``post_save`` during a request). *metadata* is a mapping or a callable taking the signal's
    arguments, ``(sender, **kwargs)``; *when*, called the same way, can skip a send (e.g.
    ``when=lambda sender, created, **kw: created`` for new rows only).

    The name is checked now (raising :class:`goaltrack.InvalidGoal`); bad metadata at send
    time is logged and never breaks the code that sent the signal. Returns the receiver, for
    ``signal.disconnect(receiver)``.
    """
    precheck_goal_name(name)

    def receiver(sender: object, **kwargs: Any) -> None:
        if when is not None and not when(sender, **kwargs):
            return
        request = kwargs.get("request")
        try:
            data = metadata(sender, **kwargs) if callable(metadata) else metadata
            tracker = get_tracker()
            if not isinstance(request, HttpRequest):
                request = None
            state = request_goals(request, tracker.provider) if request is not None else None
            _track_for_visitor(
                tracker,
                state,
                name,
                data,
                description=None,
                timezone=None,
                on_commit=on_commit,
                request=request,
            )
        except InvalidGoal:
            logger.exception("goaltrack: goal %r from a signal was not tracked", name)

    receiver.__name__ = receiver.__qualname__ = f"goaltrack_goal_{name}"
    signal.connect(receiver, sender=sender, weak=False, dispatch_uid=dispatch_uid)
    return receiver
