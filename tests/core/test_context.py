"""goaltrack.context and goaltrack.bots: the request context every adapter binds, and the bot rule.

- binding: a visitor or a lazy source, nested bindings restore the outer one, ``None`` hides it;
- no leak: asyncio tasks, threads and concurrent requests through the ASGI middleware each see
  their own visitor, and nothing is left bound after them;
- the track steps: a goal deferred to a commit (the adapter's ``at_commit``) is validated now and
  sent only when the commit runs; a bot's request sends nothing;
- the bot rule on ``str`` and ``bytes`` User-Agents alike, with one bounded cache, and when it
  is not even asked (``skip_bots`` off, no visitor for a provider that needs one).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from goaltrack import GoalTracker, InvalidGoal, Visitor
from goaltrack.adapter import Adapter
from goaltrack.asgi import GoalTrackMiddleware
from goaltrack.asgi.signals import signals
from goaltrack.bots import _is_bot_user_agent, is_bot, request_is_bot
from goaltrack.context import (
    RequestGoals,
    VisitorSource,
    bind_visitor,
    current_goals,
    current_visitor,
    goals_outside_a_request,
    unbind_visitor,
)
from goaltrack.providers import PROVIDERS
from goaltrack.testing import capture_goals

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def a_visitor() -> Visitor:
    return Visitor(str(uuid.uuid4()), None)


@pytest.fixture
def tracker() -> Any:
    tracker = GoalTracker(provider="datafast", mode="disabled")
    yield tracker
    tracker.close(1)


# -- binding ------------------------------------------------------------------------------------


def test_nothing_is_bound_outside_a_request() -> None:
    assert current_visitor() is None
    assert current_goals() is None


def test_nested_bindings_restore_the_outer_visitor() -> None:
    outer, inner = a_visitor(), a_visitor()
    outer_token = bind_visitor(outer)
    inner_token = bind_visitor(inner)
    assert current_visitor() is inner
    unbind_visitor(inner_token)
    assert current_visitor() is outer
    hidden = bind_visitor(None)
    assert current_visitor() is None
    unbind_visitor(hidden)
    assert current_visitor() is outer
    unbind_visitor(outer_token)
    assert current_visitor() is None


def test_a_source_is_read_only_when_the_visitor_is_asked_for() -> None:
    visitor = a_visitor()

    class Counting(VisitorSource):
        __slots__ = ("asked",)

        def __init__(self) -> None:
            self.asked = 0

        @property
        def visitor(self) -> Visitor | None:
            self.asked += 1
            return visitor

    source = Counting()
    token = bind_visitor(source)
    try:
        assert source.asked == 0
        assert current_visitor() is visitor
        assert source.asked == 1
        assert current_goals() is None  # a source, not a request's goals
    finally:
        unbind_visitor(token)


def test_bound_request_goals_are_the_current_goals(tracker: GoalTracker) -> None:
    visitor = a_visitor()
    goals = RequestGoals(
        Adapter(signals, tracker),
        tracker.provider,
        f"datafast_visitor_id={visitor.visitor_id}",
        BROWSER,
    )
    token = bind_visitor(goals)
    try:
        assert current_goals() is goals
        assert current_visitor() == visitor  # read from the cookie, on this first ask
    finally:
        unbind_visitor(token)
    assert current_goals() is None


# -- no leak between tasks, threads and requests ----------------------------------------------


def test_each_asyncio_task_sees_only_its_own_visitor() -> None:
    first, second = a_visitor(), a_visitor()

    async def main() -> list[Visitor | None]:
        bound: list[Visitor] = []
        both_bound = asyncio.Event()

        async def request(visitor: Visitor) -> Visitor | None:
            token = bind_visitor(visitor)
            try:
                bound.append(visitor)
                if len(bound) == 2:
                    both_bound.set()
                await both_bound.wait()  # the other task has bound its visitor by now
                return current_visitor()
            finally:
                unbind_visitor(token)

        seen = await asyncio.gather(request(first), request(second))
        return [*seen, current_visitor()]

    assert asyncio.run(main()) == [first, second, None]


def test_a_thread_sees_neither_the_callers_visitor_nor_leaves_its_own() -> None:
    mine, theirs = a_visitor(), a_visitor()
    seen: list[Visitor | None] = []
    token = bind_visitor(mine)
    try:

        def other_request() -> None:
            seen.append(current_visitor())
            bind_visitor(theirs)  # never unbound: dies with the thread's context
            seen.append(current_visitor())

        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        assert current_visitor() is mine
    finally:
        unbind_visitor(token)
    assert seen == [None, theirs]


def test_concurrent_requests_through_the_middleware_each_see_their_visitor(
    tracker: GoalTracker,
) -> None:
    visitors = [a_visitor() for _ in range(3)]
    seen: dict[str, Visitor | None] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0)  # let the other requests bind theirs first
        seen[scope["path"]] = current_visitor()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = GoalTrackMiddleware(app, tracker=tracker)

    async def request(path: str, visitor: Visitor | None) -> None:
        headers = [(b"user-agent", BROWSER.encode())]
        if visitor is not None:
            headers.append((b"cookie", f"datafast_visitor_id={visitor.visitor_id}".encode()))
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: MutableMapping[str, Any]) -> None:
            return None

        await middleware(scope, receive, send)

    async def main() -> Visitor | None:
        await asyncio.gather(
            *(request(f"/{n}", visitor) for n, visitor in enumerate(visitors)),
            request("/anonymous", None),
        )
        return current_visitor()

    assert asyncio.run(main()) is None
    assert seen == {"/0": visitors[0], "/1": visitors[1], "/2": visitors[2], "/anonymous": None}


# -- the track steps ------------------------------------------------------------------------------


class CommittingAdapter(Adapter):
    """An adapter with transactions: goals wait for ``commit()``, as under Django's on_commit."""

    def __init__(self, tracker: GoalTracker) -> None:
        super().__init__(signals, tracker)
        self.waiting: list[Callable[[], None]] = []

    def at_commit(self, on_commit: bool | None) -> Callable[[Callable[[], None]], object] | None:
        return self.waiting.append if on_commit else None

    def commit(self) -> None:
        waiting, self.waiting = self.waiting, []
        for send in waiting:
            send()


def test_a_goal_deferred_to_the_commit_is_validated_now_and_sent_at_the_commit() -> None:
    tracker = GoalTracker(provider="datafast", mode="disabled", strict=True)
    adapter = CommittingAdapter(tracker)
    visitor = a_visitor()
    goals = RequestGoals(adapter, tracker.provider, f"datafast_visitor_id={visitor.visitor_id}")
    try:
        with capture_goals() as captured:
            assert goals.track_steps("signup", {"plan": "pro"}, None, None, True) is True
            assert captured.names == []  # nothing sent before the commit
            assert goals.tracked == 0
            with pytest.raises(InvalidGoal):  # strict: raised at the call, not at the commit
                goals.track_steps("Not A Valid Name!", None, None, None, True)
            adapter.commit()
            assert captured.names == ["signup"]
            assert captured[0].visitor_id == visitor.visitor_id
            assert goals.tracked == 1
            # Without on_commit the same steps send at once.
            assert goals.track("checkout") is True
            assert captured.names == ["signup", "checkout"]
    finally:
        tracker.close(1)


def test_a_bots_request_sends_nothing_and_shows_no_visitor(tracker: GoalTracker) -> None:
    visitor = a_visitor()
    cookie = f"datafast_visitor_id={visitor.visitor_id}"
    bot = RequestGoals(Adapter(signals, tracker), tracker.provider, cookie, GOOGLEBOT.encode())
    human = RequestGoals(Adapter(signals, tracker), tracker.provider, cookie, BROWSER)
    with capture_goals() as captured:
        assert bot.track("signup") is False
        assert human.track("signup") is True
    assert (bot.is_bot, bot.visitor) == (True, None)
    assert (human.is_bot, human.visitor) == (False, visitor)
    assert [goal.visitor_id for goal in captured] == [visitor.visitor_id]


def test_goals_outside_a_request_are_for_the_bound_visitor(tracker: GoalTracker) -> None:
    visitor = a_visitor()
    token = bind_visitor(visitor)
    try:
        goals = goals_outside_a_request(Adapter(signals, tracker))
    finally:
        unbind_visitor(token)
    assert (goals.visitor, goals.is_bot, goals.request) == (visitor, False, None)


# -- the bot rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (GOOGLEBOT, True),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", True),
        ("facebookexternalhit/1.1", True),
        ("UptimeRobot/2.0", True),
        (BROWSER, False),
        ("okhttp/4.12.0", False),  # a mobile app: a real visitor
        ("python-httpx/0.27.0", False),
        ("Mozilla/5.0 (iPhone) AppleWebKit Mobile/15E148 Robotics-Fan", False),
    ],
)
def test_the_bot_rule_is_the_same_on_text_and_raw_bytes(user_agent: str, expected: bool) -> None:
    assert is_bot(user_agent) is expected
    assert is_bot(user_agent.encode("latin-1")) is expected


def test_the_bot_cache_is_bounded_and_skips_giant_user_agents() -> None:
    _is_bot_user_agent.cache_clear()
    assert is_bot(GOOGLEBOT) is True
    assert is_bot(BROWSER.encode()) is False
    assert _is_bot_user_agent.cache_info().currsize == 2
    assert is_bot(b"Mozilla/5.0 " + b"x" * 600 + b" bingbot/2.0") is True
    assert _is_bot_user_agent.cache_info().currsize == 2
    assert _is_bot_user_agent.cache_info().maxsize == 2048
    assert is_bot(None) is False
    assert is_bot(b"") is False


def test_a_request_is_a_bot_only_when_skipping_bots_matters() -> None:
    datafast, flowsery = PROVIDERS["datafast"], PROVIDERS["flowsery"]
    visitor = a_visitor()
    assert request_is_bot(GOOGLEBOT, visitor, datafast, skip_bots=True) is True
    assert request_is_bot(GOOGLEBOT.encode(), visitor, datafast, skip_bots=True) is True
    assert request_is_bot(GOOGLEBOT, visitor, datafast, skip_bots=False) is False
    assert request_is_bot(BROWSER, visitor, datafast, skip_bots=True) is False
    assert request_is_bot(None, visitor, datafast, skip_bots=True) is False
    # No visitor: a provider that needs one gets nothing anyway; one that does not still would.
    assert datafast.visitor_required
    assert not flowsery.visitor_required
    assert request_is_bot(GOOGLEBOT, None, datafast, skip_bots=True) is False
    assert request_is_bot(GOOGLEBOT, None, flowsery, skip_bots=True) is True
