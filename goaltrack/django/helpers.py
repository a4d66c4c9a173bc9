"""Tracking from Django code: ``track_goal`` (call or decorator), ``connect_goal``, the visitor.

``track_goal(request, name, metadata)`` tracks now; ``@track_goal(name)`` tracks after a view
answered a POST, PUT, PATCH or DELETE (or ``methods=``) with a status below 400, if ``when``
agrees. ``connect_goal(signal, name)`` turns any Django signal into a goal, its callables taking
the signal's arguments by name (checked against Django's own signals' arguments). The rules are
the core's (:mod:`goaltrack.context`, :mod:`goaltrack.decorator`); this module is Django's glue:
the request's state on ``request.goaltrack``, class-based and async views, ``on_commit`` (the
adapter's :meth:`~goaltrack.adapter.Adapter.at_commit`: the core's track steps send the goal from
``transaction.on_commit``), and the frameworks built on Django views: Django REST framework's
``Request`` (which wraps Django's) and django-ninja's operations (which return data, or
``(status, data)``, instead of a response).
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol, TypeVar, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest

from goaltrack import adapter, context
from goaltrack.context import Metadata, current_goals, current_visitor, goals_outside_a_request
from goaltrack.decorator import (
    DJANGO_SIGNAL_ARGUMENTS,
    GoalSpec,
    MetadataArg,
    view_arguments,
    with_resolved_signature,
)
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.signals import signals
from goaltrack.payments import Amount
from goaltrack.providers import Provider
from goaltrack.tracker import get_tracker

__all__ = [
    "RequestGoals",
    "connect_goal",
    "current_visitor",
    "request_goals",
    "track_goal",
    "track_payment",
]

logger = logging.getLogger("goaltrack")

ViewT = TypeVar("ViewT", bound=Callable[..., Any])


class WrapsHttpRequest(Protocol):
    """A request that wraps Django's, as Django REST framework's ``Request`` does."""

    @property
    def _request(self) -> HttpRequest: ...


#: Where the per-request state lives on ``HttpRequest`` (also ``request.goaltrack``).
REQUEST_ATTRIBUTE = "goaltrack"


class _DjangoAdapter(adapter.Adapter):
    """The process-wide tracker, with its request options read from the ``GOALTRACK`` setting."""

    def __init__(self) -> None:
        super().__init__(signals)

    @property
    def skip_bots(self) -> bool:
        return goaltrack_settings.skip_bots

    @property
    def flush_at_request_end(self) -> float | None:
        return goaltrack_settings.flush_at_request_end

    def at_commit(self, on_commit: bool | None) -> adapter.AtCommit | None:
        """``transaction.on_commit`` when *on_commit* (None: the ``ON_COMMIT`` setting) says so."""
        defer = goaltrack_settings.on_commit if on_commit is None else on_commit
        return transaction.on_commit if defer else None


django_adapter = _DjangoAdapter()


class RequestGoals(context.RequestGoals):
    """What goaltrack knows about one request, available as ``request.goaltrack``.

    Built once per request (by the middleware, or by the first ``track_goal`` call); the cookies
    and the User-Agent are read when first needed.
    """

    __slots__ = ("_request",)

    def __init__(self, request: HttpRequest, provider: Provider) -> None:
        meta = request.META
        # Cookies Django has parsed already are cheaper to read than the raw header.
        cookies = request.__dict__.get("COOKIES") or meta.get("HTTP_COOKIE")
        context.RequestGoals.__init__(
            self, django_adapter, provider, cookies, meta.get("HTTP_USER_AGENT")
        )
        # Weak: a strong reference would make a cycle with the request, left to the garbage
        # collector on every request.
        self._request: Callable[[], HttpRequest | None] = weakref.ref(request)

    @property
    def request(self) -> HttpRequest | None:
        return self._request()

    def describe(self) -> str:
        request = self._request()
        return "" if request is None else f"{request.method} {request.path}"

    def track(
        self,
        name: str,
        metadata: Metadata | None = None,
        *,
        description: str | None = None,
        timezone: str | None = None,
        on_commit: bool | None = None,
    ) -> bool:
        """``track_goal(request, ...)`` for this request; ``on_commit`` as there (validated now,
        so that a strict tracker raises InvalidGoal here, whatever happens at the commit)."""
        return self.track_steps(name, metadata, description, timezone, on_commit)


def request_goals(request: HttpRequest, provider: Provider | None = None) -> RequestGoals:
    """The request's :class:`RequestGoals` (made on first use; it reads the request lazily)."""
    if provider is None:
        provider = get_tracker().provider
    state = request.__dict__.get(REQUEST_ATTRIBUTE)
    if state is not None and state.provider is provider:
        return state  # type: ignore[no-any-return]
    state = request.__dict__[REQUEST_ATTRIBUTE] = RequestGoals(request, provider)
    return state


# -- tracking now, or a decorator --------------------------------------------------------------


@overload
def track_goal(
    request: HttpRequest | WrapsHttpRequest,
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
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
) -> Callable[[ViewT], ViewT]: ...


def track_goal(
    request: HttpRequest | WrapsHttpRequest | str,
    name: str | None = None,
    metadata: MetadataArg = None,
    *,
    description: str | None = None,
    timezone: str | None = None,
    on_commit: bool | None = None,
    methods: Collection[str] | None = None,
    when: Callable[..., object] | None = None,
) -> bool | Callable[[ViewT], ViewT]:
    """Track a goal for the visitor making *request*, or decorate a view to track one.

    ``track_goal(request, "signup", {"plan": "pro"})``, with Django's request or Django REST
    framework's, validates the goal and queues it; it returns True when the goal was queued (or
    will be, at commit), False when it will not be sent: nobody to attribute it to (a cookieless
    visitor, a bot), or an invalid goal on a tracker that is not strict (logged at ERROR; a
    strict tracker, as under ``DEBUG``, raises :class:`goaltrack.InvalidGoal`). It never waits
    for the network. Call it after the database work it reports has committed.

    ``@track_goal("signup")`` decorates a function view, a view method (directly or with
    ``method_decorator``) or a class-based view, sync or async, a DRF ``APIView`` method or
    viewset ``@action``, a django-ninja operation. The goal is tracked after the view answered a
    POST, PUT, PATCH or DELETE (``methods=`` changes that, e.g. ``methods=["GET"]``) with a
    status below 400 (data, as a django-ninja operation returns it, counts as 200, or as the
    status of a ``(status, data)`` pair), never when it raises, and only if ``when`` (if given)
    returns true, e.g. ``when=lambda response: response.status_code == 302`` for the redirect
    after a form POST. ``metadata`` and ``when`` are called with the arguments they declare, by
    name: ``request``, ``response`` and the view's keyword arguments (a URL's ``pk``, a ninja
    ``payload``). The name, and the names the callables declare, are checked when the decorator
    is applied; anything failing at request time is logged, never breaks the response.

    ``on_commit=True`` (default: the ``ON_COMMIT`` setting) sends the goal only once the current
    database transaction commits, so that a rolled-back signup is not counted.
    """
    if isinstance(request, str):
        if name is not None:
            raise TypeError(
                "track_goal(name, ...) decorates a view; to track now, pass the request first: "
                "track_goal(request, name, metadata)"
            )
        return _goal_decorator(
            GoalSpec(request, metadata, description, timezone, on_commit, methods, when)
        )
    http_request = _http_request(request)
    if http_request is None:
        raise TypeError(
            f"track_goal() takes an HttpRequest or a goal name first, not {type(request).__name__}"
        )
    if name is None:
        raise TypeError("track_goal(request, name, metadata): the goal name is missing")
    return request_goals(http_request).track(
        name,
        metadata,  # type: ignore[arg-type]
        description=description,
        timezone=timezone,
        on_commit=on_commit,
    )


def track_payment(
    request: HttpRequest | WrapsHttpRequest,
    amount: Amount,
    currency: str,
    transaction_id: str,
    *,
    visitor_id: str | None = None,
    session_id: str | None = None,
    email: str | None = None,
    name: str | None = None,
    customer_id: str | None = None,
    renewal: bool = False,
    refunded: bool = False,
    free_trial: bool | None = None,
    timestamp: datetime.datetime | str | None = None,
    on_commit: bool | None = None,
) -> bool:
    """Track a payment for the visitor making *request*, or for *visitor_id* when given.

    In a payment provider's webhook (no visitor cookie) pass the visitor id captured at
    checkout. Validated now (an invalid payment follows the strict rule, like a goal), queued,
    never waiting for the network; ``on_commit`` as for :func:`track_goal`. The arguments are
    :meth:`goaltrack.GoalTracker.track_payment`'s.
    """
    http_request = _http_request(request)
    if http_request is None:
        raise TypeError(
            f"track_payment() takes an HttpRequest first, not {type(request).__name__}; "
            "outside a request use goaltrack.django.get_tracker().track_payment(...)"
        )
    return request_goals(http_request).track_payment(
        amount,
        currency,
        transaction_id,
        visitor_id=visitor_id,
        session_id=session_id,
        email=email,
        name=name,
        customer_id=customer_id,
        renewal=renewal,
        refunded=refunded,
        free_trial=free_trial,
        timestamp=timestamp,
        on_commit=on_commit,
    )


def _goal_decorator(spec: GoalSpec) -> Callable[[ViewT], ViewT]:
    def track_response(
        spec: GoalSpec, args: tuple[Any, ...], kwargs: dict[str, Any], response: object
    ) -> None:
        status = _view_status(response)
        found = _find_request(args)
        if found is None:
            logger.error(
                "goaltrack: @track_goal(%r) found no HttpRequest in the view's arguments",
                spec.name,
            )
            return
        request, http_request = found
        spec.track_after_view(
            lambda: request_goals(http_request),
            http_request.method,
            status,
            {**kwargs, "request": request, "response": response},
        )

    def must_leave_event_loop() -> bool:
        # A sync tracker delivers inline, and on_commit needs the database: both block.
        deferred = django_adapter.at_commit(spec.on_commit) is not None
        return deferred or get_tracker().mode == "sync"

    async def track_response_async(
        spec: GoalSpec, args: tuple[Any, ...], kwargs: dict[str, Any], response: object
    ) -> None:
        if must_leave_event_loop():
            await sync_to_async(track_response)(spec, args, kwargs, response)
        else:
            track_response(spec, args, kwargs, response)

    async def await_then_track(
        spec: GoalSpec, args: tuple[Any, ...], kwargs: dict[str, Any], pending: Awaitable[Any]
    ) -> Any:
        response = await pending
        await track_response_async(spec, args, kwargs, response)
        return response

    checked_for: dict[object, GoalSpec] = {}

    def decorate(view: ViewT) -> ViewT:
        if isinstance(view, type):
            dispatch = getattr(view, "dispatch", None)
            if dispatch is None:
                raise TypeError(f"@track_goal on a class needs a View subclass, not {view!r}")
            view_class: type[Any] = view
            view_class.dispatch = decorate(dispatch)
            return view

        # method_decorator applies the decorator on each request, to a partial of the bound
        # method: the check is made once per method, and at request time it must not raise.
        target = inspect.unwrap(view)
        checked = checked_for.get(target)
        if checked is None:
            try:
                checked = spec.with_arguments(
                    view_arguments(view, {"request", "response"}), f"@track_goal({spec.name!r})"
                )
            except TypeError:
                if not isinstance(view, functools.partial):
                    raise  # applied at import: the error is the developer's, there
                logger.exception("goaltrack: @track_goal(%r) not applied", spec.name)
                return view
            checked_for[target] = checked

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                response = await view(*args, **kwargs)
                await track_response_async(checked, args, kwargs, response)
                return response

            return with_resolved_signature(async_view, view)  # type: ignore[return-value]

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            response = view(*args, **kwargs)
            if inspect.isawaitable(response):
                # dispatch() of an async class-based view returns its handler's coroutine.
                return await_then_track(checked, args, kwargs, response)
            track_response(checked, args, kwargs, response)
            return response

        return with_resolved_signature(sync_view, view)  # type: ignore[return-value]

    return decorate


def _find_request(args: tuple[Any, ...]) -> tuple[object, HttpRequest] | None:
    """The request as the view got it (for ``metadata``), and Django's request it is or wraps."""
    # A function view gets (request, ...), a method (self, request, ...).
    for arg in args[:2]:
        http_request = _http_request(arg)
        if http_request is not None:
            return arg, http_request
    return None


def _http_request(request: object) -> HttpRequest | None:
    if isinstance(request, HttpRequest):
        return request
    # Django REST framework's Request keeps Django's as ``_request`` (and is no HttpRequest).
    wrapped = getattr(request, "_request", None)
    return wrapped if isinstance(wrapped, HttpRequest) else None


def _view_status(result: object) -> int | None:
    """The status a view answered with; None when it gave nothing to answer with."""
    status = getattr(result, "status_code", None)
    if isinstance(status, int):
        return status
    if result is None:
        return None  # Django turns that into an error
    # Data, as a django-ninja operation returns it: a (status, data) pair, or data sent as 200
    # (or as the operation's one declared status: either way below 400).
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
        return result[0]
    return 200


# -- signals into goals --------------------------------------------------------------------------


def connect_goal(
    signal: Signal,
    name: str,
    *,
    sender: object = None,
    metadata: MetadataArg = None,
    description: str | None = None,
    timezone: str | None = None,
    when: Callable[..., object] | None = None,
    on_commit: bool | None = None,
    dispatch_uid: str | None = None,
) -> Callable[..., None]:
    """Track goal *name* each time *signal* is sent (by *sender*, if given).

    The visitor is the one of the ``request`` in the signal's arguments if there is one (as for
    ``user_logged_in``), else the current visitor bound by the middleware (as for a model's
    ``post_save`` during a request). *metadata* is a mapping or a callable; *when*, a callable,
    can skip a send. Both are given the signal's keyword arguments by name, those they declare:
    ``metadata=lambda user, request: {...}`` on ``user_logged_in``, ``when=lambda created:
    created`` on ``post_save``; the sender only as a parameter named ``sender``.

    The name is checked now (raising :class:`goaltrack.InvalidGoal`), and so are the names the
    callables declare, for Django's own signals (TypeError naming the signal's arguments);
    anything failing at send time (``metadata``, ``when``, a bad goal) is logged and never
    breaks the code that sent the signal. Returns the receiver, for
    ``signal.disconnect(receiver)``.
    """
    return GoalSpec(name, metadata, description, timezone, on_commit, when=when).connect(
        signal,
        _goals_for_signal,
        DJANGO_SIGNAL_ARGUMENTS,
        always_sent={"signal"},  # Django sends the signal itself too
        sender=sender,
        dispatch_uid=dispatch_uid,
    )


def _goals_for_signal(sender: object, kwargs: Any) -> context.RequestGoals:
    request = kwargs.get("request")
    if isinstance(request, HttpRequest):
        return request_goals(request)
    return current_goals() or goals_outside_a_request(django_adapter)
