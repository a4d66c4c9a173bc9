"""``GoalTrackMiddleware``: the visitor of each request, for code that has no request at hand.

For each request carrying the provider's cookie it attaches ``request.goaltrack`` and binds it
as goaltrack's current visitor (``goaltrack.django.current_visitor()``) until the response is
produced, and while a streaming response produces its chunks. The cookies and the User-Agent are
read only when a goal is tracked or the visitor is asked for: a request that tracks nothing pays
for a substring test and a ContextVar. Known bots get no visitor, so nothing is tracked for them.
With ``FLUSH_AT_REQUEST_END``, a request that tracked goals waits for their delivery before its
response leaves the middleware. It works in sync (WSGI) and async (ASGI) stacks without
switching per request, and tracks nothing itself.

With ``GOALTRACK["SCRIPT_PROXY"]`` it also answers ``<SCRIPT_PROXY_PREFIX>/script.js`` and
``<SCRIPT_PROXY_PREFIX>/events`` itself (:mod:`goaltrack.script_proxy_sync`: events answered at
once and forwarded from a small background pool, the script from a cache), before any view, so
``urls.py`` needs nothing; every other request passes through as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)

from goaltrack.context import bind_visitor, unbind_visitor
from goaltrack.cookies import Visitor
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.helpers import REQUEST_ATTRIBUTE, RequestGoals, django_adapter
from goaltrack.script_proxy_sync import ProxyResponse, SyncScriptProxy, proxy_for
from goaltrack.tracker import get_tracker

__all__ = ["GoalTrackMiddleware"]

GetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


class GoalTrackMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Without this the next middleware up would see a sync callable (Django #34328).
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        if goaltrack_settings.script_proxy and (proxy := _proxy_of(request)) is not None:
            return _answer(proxy, request)
        get_response: GetResponse = self.get_response  # type: ignore[assignment]
        state = _visitor_state(request)
        if state is None:
            response = get_response(request)
        else:
            token = bind_visitor(state)
            try:
                response = get_response(request)
            finally:
                unbind_visitor(token)
            if isinstance(response, StreamingHttpResponse):
                _bind_while_streaming(response, state)
        goals = request.__dict__.get(REQUEST_ATTRIBUTE)
        if goals is not None and goals.tracked:
            django_adapter.flush_after(goals, _carrier(request))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if goaltrack_settings.script_proxy and (proxy := _proxy_of(request)) is not None:
            # Never waits for the provider but for a cold script cache: off the event loop.
            return await sync_to_async(_answer, thread_sensitive=False)(proxy, request)
        get_response: AsyncGetResponse = self.get_response  # type: ignore[assignment]
        state = _visitor_state(request)
        if state is None:
            response = await get_response(request)
        else:
            token = bind_visitor(state)
            try:
                response = await get_response(request)
            finally:
                unbind_visitor(token)
            if isinstance(response, StreamingHttpResponse):
                _bind_while_streaming(response, state)
        goals = request.__dict__.get(REQUEST_ATTRIBUTE)
        if goals is not None and goals.tracked:
            await django_adapter.aflush_after(goals, _carrier(request))
        return response


def _carrier(request: HttpRequest) -> Mapping[str, Any]:
    """Where a Lambda adapter put the invocation's context: the ASGI scope (Mangum), else the
    WSGI environ (apig-wsgi, serverless-wsgi)."""
    scope: Mapping[str, Any] | None = getattr(request, "scope", None)
    return request.META if scope is None else scope


# -- the script proxy ----------------------------------------------------------------------------

# (provider, api_url, prefix, trusted proxies) -> the proxy for them (None: it cannot run); the
# last one only, rebuilt when the setting changes.
_proxy: tuple[tuple[object, ...], SyncScriptProxy | None] | None = None


def _proxy_of(request: HttpRequest) -> SyncScriptProxy | None:
    """The script proxy when *request* is for one of its paths, else None."""
    global _proxy
    prefix = goaltrack_settings.script_proxy_prefix
    path = request.path_info
    if not path.startswith(prefix.rstrip("/") + "/"):
        return None
    tracker = get_tracker()
    key = (tracker.provider, tracker.api_url, prefix, goaltrack_settings.trusted_proxies)
    made = _proxy
    if made is None or made[0] != key:
        # A provider without known URLs: logged once here, and reported by manage.py check.
        made = _proxy = (key, proxy_for(tracker, goaltrack_settings, development=False))
    proxy = made[1]
    return proxy if proxy is not None and proxy.handles(path) else None


def _answer(proxy: SyncScriptProxy, request: HttpRequest) -> HttpResponse:
    answer: ProxyResponse = proxy.handle(
        request.method or "GET",
        request.path_info,
        request.META,
        request.read,
        request.scheme or "http",
    )
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


def _visitor_state(request: HttpRequest) -> RequestGoals | None:
    """The request's goaltrack state, or None when there is no visitor cookie to read.

    Most requests (assets, API clients, bots, first visits) carry no visitor cookie: for them
    the middleware does nothing more, and ``track_goal`` reads the request if it is called.
    A request already read (the middleware listed twice) is not bound twice.
    """
    if REQUEST_ATTRIBUTE in request.__dict__:
        return None
    header = request.META.get("HTTP_COOKIE")
    if not header:
        return None
    provider = get_tracker().provider
    if provider.visitor_cookie not in header and (
        provider.session_cookie is None or provider.session_cookie not in header
    ):
        return None
    # Not read yet: RequestGoals parses the cookies when the visitor is first asked for.
    state = request.__dict__[REQUEST_ATTRIBUTE] = RequestGoals(request, provider)
    return state


def _bind_while_streaming(response: StreamingHttpResponse, state: RequestGoals) -> None:
    """Make the visitor current while each chunk of a streaming response is produced.

    The chunks are produced after the middleware returned, by the server, possibly in another
    thread or task: the visitor is bound and unbound around each one, so it never leaks into
    what the server does next.
    """
    if state.visitor is None:
        return
    if isinstance(response, FileResponse):
        return  # re-wrapping its content would turn off the server's sendfile
    content = response.streaming_content
    if response.is_async:
        response.streaming_content = _bound_async_chunks(content, state.visitor)  # type: ignore[arg-type]
    else:
        response.streaming_content = _bound_chunks(content, state.visitor)  # type: ignore[arg-type]


def _bound_chunks(content: Iterator[bytes], visitor: Visitor) -> Iterator[bytes]:
    iterator = iter(content)
    while True:
        token = bind_visitor(visitor)
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        finally:
            unbind_visitor(token)
        yield chunk


async def _bound_async_chunks(
    content: AsyncIterator[bytes], visitor: Visitor
) -> AsyncIterator[bytes]:
    iterator = aiter(content)
    while True:
        token = bind_visitor(visitor)
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        finally:
            unbind_visitor(token)
        yield chunk
