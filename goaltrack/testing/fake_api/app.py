"""The fake API's HTTP side: Starlette routes, the wire form of the faults, ``create_app``.

This module owns the routes: ``POST [/<provider>]/api/v1/goals`` (the bare path serves the
default provider) and ``POST [/flowsery]/analytics/api/v1/goals``; the same for
``/api/v1/payments``, and DataFast's ``DELETE [/datafast]/api/v1/payments``; the tracking
script and its pageview endpoint (``GET [/<provider>]/js/script.js``,
``POST [/<provider>]/api/events``); the ``/_fake/`` control and inspection endpoints
(``_Endpoints.routes``). It also puts the faults' answers on the wire: a dropped connection, a
request held unanswered (blackhole), a body sent a byte at a time (trickle) or padded and
streamed (huge body). What to answer is decided by
:class:`~goaltrack.testing.fake_api.state.FakeAPIState`.
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from goaltrack.testing.fake_api.faults import BLACKHOLE_HOLD_MAX_S, check_faults
from goaltrack.testing.fake_api.rules import (
    CLI_GOALS_PATH,
    GOALS_PATH,
    PAYMENTS_PATH,
    PROVIDERS,
    Rejection,
    error_body,
    parse_object,
)
from goaltrack.testing.fake_api.script import (
    EVENTS_PATH,
    SCRIPT_PATH,
    check_script_id,
    tracking_script,
)
from goaltrack.testing.fake_api.state import Answer, FakeAPIState

__all__ = ["create_app", "quick_help"]

_CLI_PAYMENTS_PATH = "/analytics" + PAYMENTS_PATH  # beside Flowsery's CLI goals path
_HOLD_POLL_S = 0.1  # how often a held request looks at the server's stopping flag
_PAD_OPEN = b',"padding":"'
_PAD_CHUNK = b"x" * 65536


def _goals_path(path: str) -> str:
    """The goals path beside a payments path: a provider serves payments where it serves goals."""
    return path.replace(PAYMENTS_PATH, GOALS_PATH)


def _cors_headers(request: Request) -> dict[str, str]:
    # Any page may load the script and report its pageview, as with the real providers.
    return {
        "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


async def _drop(send: Send) -> None:
    """Announce a body and never send it: uvicorn then closes the connection mid-response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"128")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


class _DroppedResponse(Response):
    """The reset_next fault: a broken response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _drop(send)


async def _until_disconnected(receive: Receive) -> None:
    # Once the request body is read, uvicorn's receive() returns only when the client is gone.
    while (await receive())["type"] != "http.disconnect":
        pass


class _HeldResponse(Response):
    """The blackhole: no answer, until the client disconnects or the server stops."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_until_disconnected(receive))
        deadline = time.monotonic() + BLACKHOLE_HOLD_MAX_S
        try:
            while not gone.done():
                if self.stopping.is_set() or time.monotonic() >= deadline:
                    # A hung server that goes away: the connection closes without an answer.
                    await _drop(send)
                    return
                await asyncio.wait({gone}, timeout=_HOLD_POLL_S)
        finally:
            gone.cancel()


class _ShapedResponse(Response):
    """A JSON answer padded to a size and/or sent one byte at a time."""

    def __init__(self, answer: Answer, stopping: threading.Event) -> None:
        body = answer.body if answer.body is not None else {}
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.prefix, self.padding, self.suffix = content, 0, b""
        if answer.pad_to is not None and answer.pad_to > len(content) + len(_PAD_OPEN) + 1:
            # {"status":...,"padding":"xxx…"}: still the provider's JSON, just long.
            self.prefix = content[:-1] + _PAD_OPEN
            self.suffix = b'"}'
            self.padding = answer.pad_to - len(self.prefix) - len(self.suffix)
        self.length = len(self.prefix) + self.padding + len(self.suffix)
        self.status_code = answer.status
        self.answer_headers = answer.headers
        self.rate = answer.trickle_bytes_per_s
        self.stopping = stopping

    def _chunks(self) -> Iterator[bytes]:
        yield self.prefix
        left = self.padding
        while left > 0:
            size = min(left, len(_PAD_CHUNK))
            yield _PAD_CHUNK[:size]
            left -= size
        yield self.suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(self.length).encode()),
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in self.answer_headers.items()
            ),
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        gone = asyncio.ensure_future(_until_disconnected(receive))
        try:
            chunks = self._chunks() if self.rate is None else _bytes(self._chunks())
            started, sent = time.monotonic(), 0
            for chunk in chunks:
                if self.rate is not None:
                    sent += len(chunk)
                    await asyncio.sleep(max(0.0, started + sent / self.rate - time.monotonic()))
                if gone.done() or self.stopping.is_set():
                    return  # the client left, or the server stops: the body stays short
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


def _bytes(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for index in range(len(chunk)):
            yield chunk[index : index + 1]


class _ControlError(Exception):
    pass


async def _control_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return parse_object(raw)
    except Rejection as exc:
        raise _ControlError(exc.message) from exc


def _string_list(body: Mapping[str, object], field: str) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _ControlError(f"{field} must be a list of strings")
    return value


class _Endpoints:
    def __init__(self, state: FakeAPIState, stopping: threading.Event) -> None:
        self.state = state
        self.stopping = stopping

    def routes(self) -> list[Route]:
        goal_routes = [
            Route(prefix + path, self._endpoint("goal", path), methods=["POST"])
            # The bare paths come first: "/analytics/api/v1/goals" would match "/{provider}/...".
            for prefix in ("", "/{provider}")
            for path in (GOALS_PATH, CLI_GOALS_PATH)
        ]
        payment_routes = [
            route
            for prefix in ("", "/{provider}")
            for path in (PAYMENTS_PATH, _CLI_PAYMENTS_PATH)
            for route in (
                Route(prefix + path, self._endpoint("payment", path), methods=["POST"]),
                Route(prefix + path, self._delete_payments(path), methods=["DELETE"]),
            )
        ]
        script_routes = [
            route
            for prefix in ("", "/{provider}")
            for route in (
                Route(prefix + SCRIPT_PATH, self.script, methods=["GET"]),
                Route(prefix + EVENTS_PATH, self.events, methods=["POST", "OPTIONS"]),
            )
        ]
        return [
            *goal_routes,
            *payment_routes,
            *script_routes,
            Route("/_fake/", self.index, methods=["GET"]),
            Route("/_fake/goals", self.goals, methods=["GET"]),
            Route("/_fake/counts", self.counts, methods=["GET"]),
            Route("/_fake/payments", self.payments, methods=["GET"]),
            Route("/_fake/requests", self.requests, methods=["GET"]),
            Route("/_fake/pageviews", self.pageviews, methods=["POST"]),
            Route("/_fake/faults", self.faults, methods=["GET", "POST"]),
            Route("/_fake/keys", self.keys, methods=["POST"]),
            Route("/_fake/reset", self.reset, methods=["POST"]),
        ]

    def _endpoint(
        self, kind: Literal["goal", "payment"], path: str
    ) -> Callable[[Request], Awaitable[Response]]:
        handle = self.state._handle_goal if kind == "goal" else self.state._handle_payment

        async def goal(request: Request) -> Response:
            arrived = time.time()
            provider = request.path_params.get("provider", self.state.default_provider)
            rules = PROVIDERS.get(provider)
            if rules is None or _goals_path(path) not in rules.goal_paths:
                return JSONResponse({"error": f"no such endpoint for {provider!r}"}, 404)
            raw = await request.body()
            latency = self.state._latency_seconds()
            if latency:
                await asyncio.sleep(latency)
            answer = handle(
                provider,
                request.url.path,
                request.headers.get("authorization"),
                request.query_params,
                raw,
                arrived,
            )
            if answer.hold:
                return _HeldResponse(self.stopping)
            if answer.body is None:
                return _DroppedResponse()
            if answer.trickle_bytes_per_s is not None or answer.pad_to is not None:
                return _ShapedResponse(answer, self.stopping)
            return JSONResponse(answer.body, answer.status, headers=answer.headers)

        return goal

    def _delete_payments(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        async def delete(request: Request) -> Response:
            provider = request.path_params.get("provider", self.state.default_provider)
            rules = PROVIDERS.get(provider)
            if rules is None or _goals_path(path) not in rules.goal_paths:
                return JSONResponse({"error": f"no such endpoint for {provider!r}"}, 404)
            criteria: dict[str, object] = dict(request.query_params)
            try:
                criteria.update(await _control_body(request))
            except _ControlError as exc:
                return JSONResponse(error_body(rules, 400, str(exc)), 400)
            status, body = self.state.delete_payments(
                provider, request.headers.get("authorization"), criteria
            )
            return JSONResponse(body, status)

        return delete

    async def script(self, request: Request) -> Response:
        provider = request.path_params.get("provider", self.state.default_provider)
        if provider not in PROVIDERS:
            return JSONResponse({"error": f"no such provider {provider!r}"}, 404)
        prefix = f"/{provider}" if "provider" in request.path_params else ""
        events_url = str(request.base_url).rstrip("/") + prefix + EVENTS_PATH
        return Response(
            tracking_script(provider, events_url),
            media_type="text/javascript",
            headers={"Cache-Control": "no-store"},
        )

    async def events(self, request: Request) -> Response:
        cors = _cors_headers(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        provider = request.path_params.get("provider", self.state.default_provider)
        if provider not in PROVIDERS:
            return JSONResponse({"error": f"no such provider {provider!r}"}, 404, headers=cors)
        try:
            body = await _control_body(request)
            if body.get("type") != "pageview":
                raise _ControlError("type must be 'pageview'")
            visitor_id = check_script_id(body.get("visitorId"), "visitorId")
            session_id = check_script_id(body.get("sessionId"), "sessionId")
            url = body.get("url")
            if url is not None and not isinstance(url, str):
                raise _ControlError("url must be a string")
        except (_ControlError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=cors)
        self.state.add_pageview(
            provider,
            visitor_id,
            session_id=session_id,
            url=url,
            source="script",
            headers=request.headers,
        )
        return JSONResponse({"status": "success"}, headers=cors)

    async def goals(self, request: Request) -> Response:
        return JSONResponse(self.state.goals)

    async def counts(self, request: Request) -> Response:
        return JSONResponse(self.state.counts())

    async def payments(self, request: Request) -> Response:
        return JSONResponse(self.state.payments)

    async def requests(self, request: Request) -> Response:
        return JSONResponse(self.state.requests)

    async def pageviews(self, request: Request) -> Response:
        try:
            body = await _control_body(request)
            provider = body.get("provider", self.state.default_provider)
            visitor_id = body.get("visitor_id")
            bot = body.get("bot", False)
            if not isinstance(provider, str) or provider not in PROVIDERS:
                raise _ControlError(f"provider must be one of {', '.join(PROVIDERS)}")
            if visitor_id is not None and not isinstance(visitor_id, str):
                raise _ControlError("visitor_id must be a string")
            if not isinstance(bot, bool):
                raise _ControlError("bot must be true or false")
            # "website" is accepted for readable scenarios; visitors are registered per provider.
            if not isinstance(body.get("website", ""), str):
                raise _ControlError("website must be a string")
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        visitor = self.state.add_pageview(provider, visitor_id, bot=bot)
        return JSONResponse({"visitor_id": visitor, "provider": provider, "bot": bot})

    async def faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await _control_body(request)
            except _ControlError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            fields = {name: value for name, value in body.items() if name != "clear"}
            if not isinstance(body.get("clear", False), bool):
                return JSONResponse({"error": "clear must be true or false"}, 400)
            try:
                # Checked before clearing, so that a bad request changes nothing.
                check_faults(fields)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            if body.get("clear") is True:
                self.state.clear_faults()
            self.state.set_faults(**fields)
        return JSONResponse(self.state.faults)

    async def keys(self, request: Request) -> Response:
        try:
            body = await _control_body(request)
            fields = ("revoke", "no_goals_write", "no_payments_write", "suspend")
            unknown = set(body) - set(fields)
            if unknown:
                raise _ControlError(f"unknown fields: {', '.join(sorted(unknown))}")
            marks = {field: _string_list(body, field) for field in fields}
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        for key in marks["revoke"]:
            self.state.revoke_key(key)
        for key in marks["no_goals_write"]:
            self.state.deny_goals_write(key)
        for key in marks["no_payments_write"]:
            self.state.deny_payments_write(key)
        for key in marks["suspend"]:
            self.state.suspend(key)
        return JSONResponse({field: len(keys) for field, keys in marks.items()})

    async def reset(self, request: Request) -> Response:
        try:
            body = await _control_body(request)
            unknown = set(body) - {"keep_pageviews"}
            if unknown:
                raise _ControlError(f"unknown fields: {', '.join(sorted(unknown))}")
            keep = body.get("keep_pageviews", False)
            if not isinstance(keep, bool):
                raise _ControlError("keep_pageviews must be true or false")
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.state.reset(keep_pageviews=keep)
        return JSONResponse({"status": "reset", "keep_pageviews": keep})

    async def index(self, request: Request) -> Response:
        goals = self.state.goals
        payments = self.state.payments
        rows = _rows(
            (
                goal["received_at"],
                goal["provider"],
                goal["name"],
                goal["visitor_id"] or "",
                json.dumps(goal["metadata"], ensure_ascii=False),
            )
            for goal in goals
        )
        payment_rows = _rows(
            (
                payment["received_at"],
                payment["provider"],
                payment["transaction_id"],
                f"{payment['amount']:g} {payment['currency']}",
                payment["visitor_id"] or "",
                ", ".join(
                    flag
                    for flag, on in (
                        ("renewal", payment["renewal"]),
                        ("refund", payment["refunded"]),
                        ("free trial", payment["free_trial"]),
                    )
                    if on
                ),
            )
            for payment in payments
        )
        base_url = str(request.base_url).rstrip("/")
        usage = html.escape("\n".join(quick_help(base_url, self.state)))
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>goaltrack fake API</title>"
            "</head><body><h1>goaltrack fake API</h1>"
            f"<p>{len(goals)} goal(s) and {len(payments)} payment(s) received;"
            f" {len(self.state.requests)} request(s) seen. JSON: <a href='/_fake/goals'>goals</a>,"
            " <a href='/_fake/payments'>payments</a>, <a href='/_fake/requests'>requests</a>.</p>"
            "<h2>Goals</h2>"
            "<table><tr><th>received</th><th>provider</th><th>name</th><th>visitor</th>"
            f"<th>metadata</th></tr>{rows}</table>"
            "<h2>Payments</h2>"
            "<table><tr><th>received</th><th>provider</th><th>transaction</th><th>amount</th>"
            f"<th>visitor</th><th>flags</th></tr>{payment_rows}</table>"
            f"<h2>By hand</h2><pre>{usage}</pre></body></html>"
        )
        return HTMLResponse(page)


def _rows(cells: Iterable[Iterable[object]]) -> str:
    return "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in cells
    )


def quick_help(base_url: str, state: FakeAPIState) -> list[str]:
    """How to try the fake API by hand: printed by its command line at start, shown at /_fake/."""
    provider = state.default_provider
    pageview = json.dumps({"provider": provider})
    answer = json.dumps(
        {"visitor_id": "<a new UUID v4>", "provider": provider, "bot": False},
        separators=(",", ":"),
    )
    rules = PROVIDERS[provider]
    key = (rules.key_prefixes[0] if rules.key_prefixes else "") + "test_key"
    goal = json.dumps({rules.visitor_fields[0]: "<visitor_id>", "name": "signup"})
    if state.require_pageview:
        first = "DataFast and Faurya take goals only from a visitor with a pageview; get one:"
    else:
        first = "Pageview-free: goals from any visitor id are taken; to register one anyway:"
    return [
        first,
        f"  curl -X POST {base_url}/_fake/pageviews -H 'Content-Type: application/json'"
        f" -d '{pageview}'",
        f"  answers {answer}",
        '  optional fields: "visitor_id" (your own id), "bot": true (a crawler: goals refused)',
        "Send a goal for it:",
        f"  curl -X POST {base_url}/{provider}{GOALS_PATH} -H 'Authorization: Bearer {key}'"
        f" -H 'Content-Type: application/json' -d '{goal}'",
        "Or from a browser: a page with this stand-in for the provider's script gets the visitor"
        " cookie and a pageview, as with the real script:",
        f'  <script defer src="{base_url}/{provider}{SCRIPT_PATH}"></script>',
        f"Point goaltrack at it: api_url={base_url}/{provider} (or GOALTRACK_API_URL)",
        f"Goals received: {base_url}/_fake/ (HTML), {base_url}/_fake/goals (JSON);"
        f" every goal request: {base_url}/_fake/requests",
        "Start again (forgetting everything; or keeping the visitors):",
        f"  curl -X POST {base_url}/_fake/reset",
        f"  curl -X POST {base_url}/_fake/reset -H 'Content-Type: application/json'"
        """ -d '{"keep_pageviews": true}'""",
    ]


def create_app(state: FakeAPIState | None = None) -> Starlette:
    """The fake API as an ASGI app; its state is ``app.state.fake_api``.

    ``app.state.fake_api_stopping`` is a :class:`threading.Event`: set it before stopping the
    server that runs the app, and the requests a blackhole holds close their connections (and
    trickling answers stop) instead of keeping the server's shutdown waiting.
    """
    state = state if state is not None else FakeAPIState()
    stopping = threading.Event()
    app = Starlette(routes=_Endpoints(state, stopping).routes())
    app.state.fake_api = state
    app.state.fake_api_stopping = stopping
    return app
