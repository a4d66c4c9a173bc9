"""``GoalTrackMiddleware``: the visitor of each request, for code that has no request at hand.

For each request carrying the provider's cookie it attaches ``request.goaltrack`` and binds it
as goaltrack's current visitor (``goaltrack.django.current_visitor()``) until the response is
produced, and while a streaming response produces its chunks. The cookies and the User-Agent are
read only when a goal is tracked or the visitor is asked for: a request that tracks nothing pays
for a substring test and a ContextVar. Known bots get no visitor, so nothing is tracked for them.
With ``FLUSH_AT_REQUEST_END``, a request that tracked goals waits for their delivery before its
response leaves the middleware. It works in sync (WSGI) and async (ASGI) stacks without
switching per request, and tracks nothing itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse

from goaltrack.context import bind_visitor, unbind_visitor
from goaltrack.cookies import Visitor
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.helpers import REQUEST_ATTRIBUTE, RequestGoals, django_adapter
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
        if goaltrack_settings.flush_at_request_end is not None:
            django_adapter.flush_after(request.__dict__.get(REQUEST_ATTRIBUTE))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
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
        if goaltrack_settings.flush_at_request_end is not None:
            await django_adapter.aflush_after(request.__dict__.get(REQUEST_ATTRIBUTE))
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
