"""Fuzzed inputs (hypothesis, derandomized so CI sees the same examples every run).

- Goal names and metadata (keys, values of every JSON-ish type, nesting, sizes, unicode with
  astral characters, HTML/script): each either raises ``InvalidGoal`` at ``track`` or becomes a
  goal the fake API accepts over HTTP and stores exactly as goaltrack normalized it.
- Cookie and User-Agent headers (malformed, duplicated, oversized, CRLF, non-UTF-8 bytes): the
  cookie parser and each adapter's middleware (Django, Flask's WSGI wrapper, ASGI), called
  in-process, never raise, and a goal is only ever tracked for a well-formed visitor id that the
  header really carried.
- The delivery worker survives all of it: a valid goal tracked afterwards is still delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from goaltrack import GoalTracker, InvalidGoal, visitor_from_cookies
from goaltrack.goals import Goal
from goaltrack.providers import PROVIDERS
from goaltrack.testing import capture_goals
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import KEYS

GOAL_EXAMPLES = 400
HEADER_EXAMPLES = 200
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
FUZZ = settings(
    max_examples=GOAL_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- strategies --------------------------------------------------------------------------------

ASTRAL = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF)
# Every code point but lone surrogates, which are refused as InvalidGoal (tested below).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
HTML = st.sampled_from(
    [
        "<script>alert(1)</script>",
        "<b>bold</b>",
        "<img src=x onerror=alert(1)>",
        "javascript:alert(1)",
        "a<scr<script>ipt>b",
        "\"'&<>",
        "onload =x",
        "<style>p{}</style>",
    ]
)
VALID_NAME = st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True)
NAMES = st.one_of(
    VALID_NAME,
    st.from_regex(r"[A-Za-z0-9 _:-]{1,70}", fullmatch=True),
    ANY_TEXT,
    st.builds(lambda a, b: a + b, VALID_NAME, ASTRAL),
    st.sampled_from(["", "identify", "Identify", " signup", "sign up", "a" * 64, "a" * 65]),
)
KEYS_ST = st.one_of(
    st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True),
    st.sampled_from(["Plan", "a b", "", "x" * 65, "ключ", "__proto__"]),
    ANY_TEXT,
)
SCALARS = st.one_of(
    ANY_TEXT,
    st.text(ASTRAL, max_size=200),
    st.text(st.sampled_from("ab<>&'\"=:"), max_size=300),
    HTML,
    st.builds(lambda html, text: html + text, HTML, ANY_TEXT),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
METADATA = st.one_of(
    st.none(), st.dictionaries(KEYS_ST, VALUES, max_size=12), st.lists(SCALARS, max_size=2)
)

COOKIE_NAMES = st.sampled_from(
    ["datafast_visitor_id", "datafast_session_id", "_fs_vid", "_fs_sid", "x", "", " _fs_vid"]
)
COOKIE_VALUES = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: f"s{u}"),
    st.uuids().map(lambda u: f'"{u}"'),
    st.from_regex(r"[A-Za-z0-9_.-]{1,140}", fullmatch=True),
    st.text(st.characters(max_codepoint=0xFF), max_size=60),
    st.sampled_from(["", "\r\nSet-Cookie: a=b", "<script>", "x" * 129, "é", "\x00"]),
)
SEPARATORS = st.sampled_from(["; ", ";", ", ", "\r\n", " ;", ";;", "\t;"])


@st.composite
def cookie_headers(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(COOKIE_NAMES, COOKIE_VALUES), max_size=6))
    text = draw(SEPARATORS).join(f"{name}={value}" for name, value in pairs)
    raw = text.encode("utf-8")
    kind = draw(st.sampled_from(["pairs", "bytes", "oversized", "spliced"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "oversized":
        return b"pad=" + b"x" * draw(st.integers(16_000, 40_000)) + b"; " + raw
    if kind == "spliced":
        return draw(st.binary(max_size=40)) + raw + draw(st.binary(max_size=40))
    return raw


USER_AGENTS = st.one_of(
    st.just(BROWSER_UA.encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"Googlebot/2.1", b"Mozilla/5.0\r\nX: y", b"\xff\xfe" * 50]),
)


# ---- goals over HTTP ---------------------------------------------------------------------------


def _tracker(api: FakeAPIServer, provider: str) -> GoalTracker:
    return GoalTracker(
        KEYS[provider],
        provider=provider,
        api_url=api.api_url(provider),
        max_retries=0,
        backoff_base=0.01,
        max_queue_size=10 * GOAL_EXAMPLES,
    )


def _stored_form(goal: Goal) -> tuple[str, str]:
    return goal.name, json.dumps(dict(goal.metadata or {}), sort_keys=True)


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["datafast", "flowsery"])
def test_every_fuzzed_goal_is_invalid_or_accepted_as_normalized(
    fake_api: FakeAPIServer, provider: str
) -> None:
    visitor_id = fake_api.add_pageview(provider, str(uuid.uuid4()))
    tracker = _tracker(fake_api, provider)
    accepted: list[Goal] = []
    outcomes = {"invalid": 0, "accepted": 0}

    @FUZZ
    @given(name=NAMES, metadata=METADATA)
    def track(name: str, metadata: Any) -> None:
        with capture_goals() as captured:
            try:
                tracker.track(name, visitor_id=visitor_id, metadata=metadata)
            except InvalidGoal:
                outcomes["invalid"] += 1
                assert list(captured) == []
                return
        outcomes["accepted"] += 1
        [goal] = captured
        accepted.append(goal)

    try:
        track()
        # The captures above kept the goals from the network: now send each accepted one.
        for goal in accepted:
            assert tracker.submit(goal)
        assert tracker.flush(timeout=60)
        stats = tracker.stats
        assert (stats.failed, stats.dropped) == (0, 0), fake_api.requests[-3:]
    finally:
        tracker.close(timeout=5)
    stored = sorted((g["name"], json.dumps(g["metadata"], sort_keys=True)) for g in fake_api.goals)
    assert stored == sorted(_stored_form(goal) for goal in accepted)
    # Both sides of the contract were explored.
    assert outcomes["invalid"] > 50, outcomes
    assert outcomes["accepted"] > 50, outcomes


@pytest.mark.slow
def test_the_worker_survives_the_fuzz_and_delivers_the_next_goal(fake_api: FakeAPIServer) -> None:
    tracker = _tracker(fake_api, "datafast")
    visitor_id = fake_api.add_pageview("datafast")

    @settings(FUZZ, max_examples=150)
    @given(name=NAMES, metadata=METADATA, visitor=st.one_of(st.none(), COOKIE_VALUES))
    def track(name: str, metadata: Any, visitor: str | None) -> None:
        with contextlib.suppress(InvalidGoal):
            tracker.track(name, visitor_id=visitor, metadata=metadata)

    try:
        track()
        tracker.track("sentinel", visitor_id=visitor_id, metadata={"after": "fuzz"})
        assert tracker.flush(timeout=60)
    finally:
        tracker.close(timeout=5)
    sentinels = [g for g in fake_api.goals if g["name"] == "sentinel"]
    assert [(g["visitor_id"], g["metadata"]) for g in sentinels] == [
        (visitor_id, {"after": "fuzz"})
    ]


def test_a_lone_surrogate_in_metadata_is_an_invalid_goal(fake_api: FakeAPIServer) -> None:
    tracker = _tracker(fake_api, "datafast")
    try:
        with pytest.raises(InvalidGoal):
            tracker.track(
                "signup",
                visitor_id=fake_api.add_pageview("datafast"),
                metadata={"note": json.loads('"\\ud800"')},
            )
    finally:
        tracker.close(timeout=5)


def test_a_huge_integer_in_metadata_is_an_invalid_goal() -> None:
    tracker = GoalTracker("df_fuzz_key_0123456789", mode="disabled")
    with pytest.raises(InvalidGoal):
        tracker.track("signup", visitor_id=str(uuid.uuid4()), metadata={"n": 10**5000})


# ---- headers -----------------------------------------------------------------------------------


def _well_formed_and_sent(goals: Iterable[Goal], header: bytes) -> None:
    for goal in goals:
        provider = goal.provider
        if goal.visitor_id is not None:
            assert provider.visitor_id_pattern.fullmatch(goal.visitor_id)
            assert goal.visitor_id.encode("latin-1") in header
        if goal.session_id is not None and provider.session_id_pattern is not None:
            assert provider.session_id_pattern.fullmatch(goal.session_id)
            assert goal.session_id.encode("latin-1") in header


@pytest.mark.slow
@settings(FUZZ, max_examples=HEADER_EXAMPLES * 2)
@given(header=cookie_headers(), provider=st.sampled_from(sorted(PROVIDERS)))
def test_the_cookie_parser_never_raises_and_only_returns_well_formed_ids(
    header: bytes, provider: str
) -> None:
    for form in (header, header.decode("latin-1")):
        visitor = visitor_from_cookies(form, provider)
        if visitor is None:
            continue
        spec = PROVIDERS[provider]
        ids = [(visitor.visitor_id, spec.visitor_id_pattern)]
        ids.append((visitor.session_id, spec.session_id_pattern))
        for value, pattern in ids:
            if value is not None:
                assert pattern is not None
                assert pattern.fullmatch(value)
                assert value.encode("latin-1") in header


@pytest.fixture
def django_middleware() -> Callable[[bytes, bytes], int]:
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    from goaltrack.django import track_goal
    from goaltrack.django.middleware import GoalTrackMiddleware

    def view(request: HttpRequest) -> HttpResponse:
        track_goal(request, "signup", {"plan": "pro"})
        return HttpResponse("ok")

    middleware = GoalTrackMiddleware(view)
    factory = RequestFactory()

    def call(cookie: bytes, user_agent: bytes) -> int:
        request = factory.get(
            "/", HTTP_COOKIE=cookie.decode("latin-1"), HTTP_USER_AGENT=user_agent.decode("latin-1")
        )
        return middleware(request).status_code

    return call


@pytest.fixture
def flask_wsgi() -> Iterator[Callable[[bytes, bytes], int]]:
    from flask import Flask, request
    from werkzeug.test import EnvironBuilder

    from goaltrack.flask import GoalTrack, track_goal

    app = Flask("fuzz")
    app.config.update(GOALTRACK_API_KEY="df_fuzz_key_0123456789", GOALTRACK_MODE="disabled")
    GoalTrack(app)

    @app.get("/")
    def index() -> str:
        track_goal(request, "signup", {"plan": "pro"})
        return "ok"

    def call(cookie: bytes, user_agent: bytes) -> int:
        environ = EnvironBuilder("/").get_environ()
        environ["HTTP_COOKIE"] = cookie.decode("latin-1")  # WSGI: headers as latin-1 text
        environ["HTTP_USER_AGENT"] = user_agent.decode("latin-1")
        statuses: list[str] = []
        body = app.wsgi_app(environ, lambda status, headers, *_: statuses.append(status))  # type: ignore[arg-type]
        b"".join(body)
        return int(statuses[0].split()[0])

    return call


@pytest.fixture
def asgi_app() -> Iterator[Callable[[bytes, bytes], int]]:
    from starlette.requests import Request

    from goaltrack.asgi import GoalTrackMiddleware, track_goal

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        track_goal(Request(scope, receive), "signup", {"plan": "pro"})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = GoalTrackMiddleware(inner, api_key="df_fuzz_key_0123456789", mode="disabled")
    loop = asyncio.new_event_loop()

    def call(cookie: bytes, user_agent: bytes) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"cookie", cookie), (b"user-agent", user_agent), (b"cookie", cookie)],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        loop.run_until_complete(app(scope, receive, send))
        return int(sent[0]["status"])

    try:
        yield call
    finally:
        loop.close()


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["django_middleware", "flask_wsgi", "asgi_app"])
def test_the_middleware_never_raises_on_fuzzed_headers(
    adapter: str, request: pytest.FixtureRequest
) -> None:
    call: Callable[[bytes, bytes], int] = request.getfixturevalue(adapter)
    tracked = {"goals": 0}

    @settings(FUZZ, max_examples=HEADER_EXAMPLES)
    @given(cookie=cookie_headers(), user_agent=USER_AGENTS)
    def serve(cookie: bytes, user_agent: bytes) -> None:
        with capture_goals() as goals:
            assert call(cookie, user_agent) == 200
        _well_formed_and_sent(goals, cookie)
        tracked["goals"] += len(goals)

    serve()
    assert tracked["goals"] > 0  # the fuzz did reach the tracking path with a valid cookie
