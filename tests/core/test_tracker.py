"""GoalTracker and its transports against the fake API over real HTTP.

Covers delivery for each provider, retries and their limits, no retry on final statuses,
Retry-After honoured, queue-full drops, flush/close/exit, fork, sync/disabled modes, hooks, the
process-wide tracker, and that the API key never shows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

import goaltrack
from goaltrack import DeliveryResult, Goal, GoalTracker, InvalidConfiguration, InvalidGoal
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.waiting import wait_until


class Recorder:
    """Collects what the tracker's hooks report."""

    def __init__(self) -> None:
        self.delivered: list[tuple[Goal, DeliveryResult]] = []
        self.failed: list[tuple[Goal, DeliveryResult]] = []
        self.dropped: list[tuple[Goal, str]] = []

    def hooks(self) -> dict[str, Any]:
        return {
            "on_delivery": lambda g, r: self.delivered.append((g, r)),
            "on_failure": lambda g, r: self.failed.append((g, r)),
            "on_drop": lambda g, reason: self.dropped.append((g, reason)),
        }


@pytest.fixture
def trackers() -> Iterator[list[GoalTracker]]:
    made: list[GoalTracker] = []
    yield made
    for tracker in made:
        tracker.close(timeout=2)


@pytest.fixture
def make_tracker(
    fake_api: FakeAPIServer, trackers: list[GoalTracker]
) -> Callable[..., GoalTracker]:
    def make(provider: str = "datafast", api_key: str = KEY, **options: Any) -> GoalTracker:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_max", 0.2)
        options.setdefault("flush_at_exit", False)
        tracker = GoalTracker(
            api_key, provider=provider, api_url=fake_api.api_url(provider), **options
        )
        trackers.append(tracker)
        return tracker

    return make


# -- delivery -----------------------------------------------------------------------------------


def test_datafast_goal_is_delivered_normalized(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    recorder = Recorder()
    tracker = make_tracker(**recorder.hooks())
    visitor = fake_api.add_pageview("datafast")
    tracker.track(
        "Newsletter Signup", visitor_id=visitor, metadata={"plan": "pro"}, description="Form"
    )
    assert tracker.flush(timeout=10)
    [goal] = fake_api.goals
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "newsletter_signup",
        visitor,
        {"plan": "pro"},
    )
    assert goal["description"] == "Form"
    assert tracker.stats.delivered == 1
    assert tracker.stats.pending == 0
    [(_, result)] = recorder.delivered
    assert result.event_id == goal["event_id"]


def test_faurya_and_flowsery_goals_carry_their_session(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    faurya = make_tracker("faurya", api_key="fy_key")
    flowsery = make_tracker("flowsery", api_key="flow_key")
    faurya.track("signup", visitor_id=fake_api.add_pageview("faurya"), session_id="fs-1")
    flowsery.track("signup", visitor_id="vid_1", session_id="sid_1", timezone="Europe/Paris")
    flowsery.track("anonymous")  # Flowsery counts goals without a visitor
    assert faurya.flush(10)
    assert flowsery.flush(10)
    by_provider = {(g["provider"], g["name"]): g for g in fake_api.goals}
    assert by_provider["faurya", "signup"]["session_id"] == "fs-1"
    assert by_provider["flowsery", "signup"]["session_id"] == "sid_1"
    assert by_provider["flowsery", "signup"]["timezone"] == "Europe/Paris"
    assert by_provider["flowsery", "anonymous"]["visitor_id"] is None


def test_account_token_sends_website_id(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker(api_key="dft_account_token", website_id="665f0b3c4d2e1a0012345678")
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    assert fake_api.goals[0]["website_id"] == "665f0b3c4d2e1a0012345678"


def test_many_goals_from_many_threads_all_arrive_once(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker(max_in_flight=4)
    visitor = fake_api.add_pageview("datafast")

    def send(thread: int) -> None:
        for i in range(50):
            tracker.track("load", visitor_id=visitor, metadata={"n": f"{thread}-{i}"})

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(30)
    numbers = sorted(g["metadata"]["n"] for g in fake_api.goals)
    assert numbers == sorted(f"{t}-{i}" for t in range(4) for i in range(50))
    assert tracker.stats.delivered == 200


# -- failures -----------------------------------------------------------------------------------


def test_no_pageview_is_final_reported_once_and_not_retried(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    tracker = make_tracker(**recorder.hooks())
    stranger = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        tracker.track("signup", visitor_id=stranger)
        assert tracker.flush(10)
    assert [r["status"] for r in fake_api.requests] == [404]
    [(goal, result)] = recorder.failed
    assert (goal.name, result.status) == ("signup", 404)
    assert tracker.stats.failed == 1
    assert tracker.stats.retried == 0
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "404" in record.getMessage()
    assert stranger in record.getMessage()


@pytest.mark.parametrize(
    ("api_key", "status"), [("df_revoked", 401), ("df_suspended", 403), ("df_noscope", 403)]
)
def test_auth_failures_hold_the_goal_until_refusal_give_up(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    api_key: str,
    status: int,
) -> None:
    # A refused key is the account's outage: the goal is held and probed again (2 s later),
    # and fails with the status only once the key has been refused for refusal_give_up.
    fake_api.state.revoke_key("df_revoked")
    fake_api.state.suspend("df_suspended")
    fake_api.state.deny_goals_write("df_noscope")
    recorder = Recorder()
    tracker = make_tracker(api_key=api_key, refusal_give_up=1.0, **recorder.hooks())
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    assert [r["status"] for r in fake_api.requests] == [status, status]
    assert recorder.failed[0][1].status == status
    assert "refusal_give_up" in recorder.failed[0][1].reason


def test_server_errors_are_retried_until_delivered(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    fake_api.set_faults(fail_next=3, fail_status=503)
    tracker = make_tracker()
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    assert [r["status"] for r in fake_api.requests] == [503, 503, 503, 200]
    assert len(fake_api.goals) == 1
    stats = tracker.stats
    assert (stats.delivered, stats.retried, stats.failed) == (1, 3, 0)


def test_an_outage_spends_no_retries_and_ends_a_goal_only_by_time(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    # Every request fails: that is the API being down, not this goal's own problem, so
    # max_retries does not end it; give_up_after does.
    fake_api.set_faults(fail_next=1000, fail_status=500)
    recorder = Recorder()
    tracker = make_tracker(max_retries=2, give_up_after=1.5, **recorder.hooks())
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    started = time.monotonic()
    assert tracker.flush(10)
    assert time.monotonic() - started >= 1.5
    assert len(fake_api.requests) > 3  # more attempts than max_retries would have allowed
    [(_, result)] = recorder.failed
    assert re.search(r"undelivered for \d+\.\d s \(give_up_after=1\.5 s\)", result.reason)
    assert result.reason.endswith("last: HTTP 500: injected failure")


def test_a_goal_failing_alone_while_the_api_answers_others_stops_at_max_retries(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    fake_api.set_faults(fail_names=["poison"], fail_status=500)
    recorder = Recorder()
    tracker = make_tracker(max_retries=2, **recorder.hooks())
    visitor = fake_api.add_pageview("datafast")
    tracker.track("poison", visitor_id=visitor)
    deadline = time.monotonic() + 10
    others = 0
    while not recorder.failed:  # the API keeps answering other goals meanwhile
        assert time.monotonic() < deadline, "the poison goal was never given up"
        tracker.track("other", visitor_id=visitor)
        others += 1
        time.sleep(0.02)  # pacing the other goals, not synchronisation
    assert tracker.flush(10)
    [(goal, result)] = recorder.failed
    assert goal.name == "poison"
    assert result.reason.startswith(
        "gave up after 3 attempts, failed 3 times while the API answered other goals "
        "(max_retries=2); last: HTTP 500"
    ), result.reason
    assert [r["name"] for r in fake_api.requests].count("poison") == 3
    assert [g["name"] for g in fake_api.goals] == ["other"] * others


def test_a_goal_tracked_while_the_breaker_is_open_and_the_workers_idle_is_delivered(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    # The only goal of an outage is given up; the workers then have nothing to do while the
    # breaker is still open. A goal tracked later must wake them once a probe may go.
    recorder = Recorder()
    tracker = make_tracker(give_up_after=0.3, **recorder.hooks())
    visitor = fake_api.add_pageview("datafast")
    tracker.track("before", visitor_id=visitor)  # delivery started (a courier takes a moment)
    assert tracker.flush(30)
    fake_api.set_faults(down_for=1.0)
    tracker.track("lost_in_the_outage", visitor_id=visitor)
    wait_until(lambda: len(recorder.failed) == 1)
    [(_, back)] = fake_api.outage_windows()
    wait_until(lambda: time.time() >= back)
    tracker.track("after_the_outage", visitor_id=visitor)
    assert tracker.flush(5)
    assert [g["name"] for g in fake_api.goals] == ["before", "after_the_outage"]


def _received_at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["received_at"]).timestamp()


def test_retry_after_is_honoured(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    fake_api.set_faults(rate_limit_next=1, retry_after=1)
    tracker = make_tracker(backoff_max=5)  # Retry-After is capped by backoff_max
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    first, second = fake_api.requests
    assert (first["status"], second["status"]) == (429, 200)
    assert _received_at(second) - _received_at(first) >= 0.95


def test_goals_tracked_while_the_gate_is_closed_wait_for_it_then_all_arrive(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    # Idle workers are not woken for each new goal while the gate is closed: they wake when it
    # opens and deliver everything that was queued meanwhile.
    fake_api.set_faults(rate_limit_next=1, retry_after=1)
    tracker = make_tracker(max_in_flight=2, backoff_max=5)
    visitor_id = fake_api.add_pageview("datafast")
    tracker.track("first", visitor_id=visitor_id)
    wait_until(lambda: tracker.stats.retried == 1)
    for name in ("second", "third", "fourth"):
        tracker.track(name, visitor_id=visitor_id)
    assert tracker.flush(10)
    limited, *delivered = fake_api.requests
    assert limited["status"] == 429
    assert [r["status"] for r in delivered] == [200] * 4
    assert all(_received_at(r) - _received_at(limited) >= 0.95 for r in delivered)
    assert sorted(g["name"] for g in fake_api.goals) == ["first", "fourth", "second", "third"]


def test_connection_reset_mid_response_is_retried_and_counted_as_possible_duplicate(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    fake_api.set_faults(reset_next=1)
    tracker = make_tracker()
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert tracker.flush(10)
    assert len(fake_api.goals) == 1
    assert tracker.stats.possible_duplicates == 1


def test_timeout_is_retried_and_the_duplicate_is_reported(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker(timeout=0.3)
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=600)
    tracker.track("signup", visitor_id=visitor)
    fake_api.wait_for_requests(1, timeout=10)
    fake_api.clear_faults()
    assert tracker.flush(10)
    # The slow first answer still stored the goal: the API has it twice, and we said so.
    fake_api.wait_for_goals(2, timeout=10)
    assert tracker.stats.possible_duplicates == 1


def test_refused_connections_are_retried_until_the_api_is_back(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    fake_api.stop()
    try:
        for i in range(5):
            tracker.track("during_outage", visitor_id=visitor, metadata={"n": i})
        wait_until(lambda: tracker.stats.retried >= 3)
        assert tracker.stats.delivered == 0
    finally:
        fake_api.start()
    assert tracker.flush(15)
    assert sorted(g["metadata"]["n"] for g in fake_api.goals) == ["0", "1", "2", "3", "4"]


# -- memory bound, flush, close ------------------------------------------------------------------


def test_full_queue_drops_new_goals_counted_and_reported(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    tracker = make_tracker(max_queue_size=5, max_in_flight=1, **recorder.hooks())
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=300)
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        accepted = [tracker.track("burst", {"n": i}, visitor_id=visitor) for i in range(20)]
    assert accepted == [True] * 5 + [False] * 15  # track() says which ones were dropped
    assert tracker.stats.queued == 5
    assert tracker.stats.dropped == 15
    assert next(g.metadata for g, _ in recorder.dropped) == {"n": "5"}
    assert all("queue is full" in reason for _, reason in recorder.dropped)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # rate-limited: one warning for the burst
    fake_api.clear_faults()
    assert tracker.flush(10)
    assert sorted(g["metadata"]["n"] for g in fake_api.goals) == ["0", "1", "2", "3", "4"]


def test_flush_returns_false_when_the_timeout_passes_first(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker()
    fake_api.set_faults(latency_ms=1500)
    tracker.track("slow", visitor_id=fake_api.add_pageview("datafast"))
    started = time.monotonic()
    assert tracker.flush(timeout=0.2) is False
    assert time.monotonic() - started < 1.0
    assert tracker.flush(timeout=10) is True


def test_close_drops_what_is_left_and_refuses_new_goals(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    recorder = Recorder()
    tracker = make_tracker(**recorder.hooks())
    fake_api.stop()
    try:
        tracker.track("lost", visitor_id="a3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
        started = time.monotonic()
        assert tracker.close(timeout=0.5) is False
        assert time.monotonic() - started < 2.0
    finally:
        fake_api.start()
    assert tracker.stats.dropped == 1
    assert tracker.track("after_close", visitor_id="a3ab2331-989f-4cfa-91c6-2461c9e3c6bd") is False
    assert tracker.stats.dropped == 2
    assert [reason for _, reason in recorder.dropped] == [
        "the tracker closed before it was delivered",
        "the tracker is closed",
    ]


def test_hook_errors_never_stop_delivery(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_hook(goal: Goal, result: DeliveryResult) -> None:
        raise RuntimeError("user bug")

    tracker = make_tracker(on_delivery=broken_hook)
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        tracker.track("one", visitor_id=visitor)
        tracker.track("two", visitor_id=visitor)
        assert tracker.flush(10)
    assert sorted(g["name"] for g in fake_api.goals) == ["one", "two"]
    assert tracker.stats.delivered == 2
    assert any("raised" in r.getMessage() for r in caplog.records)


def test_aflush_does_not_block_the_event_loop(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker()
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=300)

    async def main() -> tuple[bool, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tracker.track("async_goal", visitor_id=visitor)
        task = asyncio.create_task(ticker())
        flushed = await tracker.aflush(timeout=10)
        task.cancel()
        return flushed, ticks

    flushed, ticks = asyncio.run(main())
    assert flushed
    assert ticks >= 10  # the loop kept running while the flush waited ~300 ms
    assert fake_api.goals[0]["name"] == "async_goal"


# -- modes --------------------------------------------------------------------------------------


def test_sync_mode_delivers_before_track_returns(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker(mode="sync")
    fake_api.set_faults(fail_next=1, fail_status=502)
    assert tracker.track("sync_goal", visitor_id=fake_api.add_pageview("datafast")) is True
    assert [g["name"] for g in fake_api.goals] == ["sync_goal"]
    assert (tracker.stats.delivered, tracker.stats.retried) == (1, 1)


def test_sync_mode_track_returns_false_when_the_goal_was_not_delivered(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    recorder = Recorder()
    tracker = make_tracker(mode="sync", **recorder.hooks())
    unknown_visitor = "c3ab2331-989f-4cfa-91c6-2461c9e3c6bd"  # no pageview: 404, final
    assert tracker.track("sync_goal", visitor_id=unknown_visitor) is False
    assert [r.status for _, r in recorder.failed] == [404]
    assert tracker.track_visitor(goaltrack.Visitor(unknown_visitor, None), "again") is False
    fake_api.set_faults(fail_next=50, fail_status=503)
    impatient = make_tracker(mode="sync", sync_deadline=0.3)
    assert impatient.track("down", visitor_id=fake_api.add_pageview("datafast")) is False
    assert impatient.stats.failed == 1


def test_flush_true_means_settled_not_delivered(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    recorder = Recorder()
    tracker = make_tracker(**recorder.hooks())
    # Accepted for delivery (True), then refused by the API (no pageview: 404).
    assert tracker.track("signup", visitor_id="d3ab2331-989f-4cfa-91c6-2461c9e3c6bd") is True
    assert tracker.flush(10) is True  # nothing pending any more ...
    assert (tracker.stats.delivered, tracker.stats.failed, tracker.stats.pending) == (0, 1, 0)
    assert [r.status for _, r in recorder.failed] == [404]  # ... and this is how to learn it


def test_disabled_without_key_validates_but_sends_nothing(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        tracker = GoalTracker(None, api_url=fake_api.api_url("datafast"))
    assert tracker.mode == "disabled"
    assert "no API key" in caplog.text
    # False: validated, and nothing will be sent.
    assert tracker.track("signup", visitor_id="a3ab2331-989f-4cfa-91c6-2461c9e3c6bd") is False
    with pytest.raises(InvalidGoal):
        tracker.track("identify", visitor_id="a3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
    assert tracker.flush(1)
    assert fake_api.requests == []
    assert tracker.stats.queued == 0


def test_track_visitor_skips_cookieless_visitors_but_still_validates(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker()
    assert tracker.track_visitor(None, "signup") is False
    with pytest.raises(InvalidGoal, match="reserved"):
        tracker.track_visitor(None, "identify")
    visitor = goaltrack.Visitor(fake_api.add_pageview("datafast"), None)
    assert tracker.track_visitor(visitor, "signup") is True
    assert tracker.flush(10)
    assert len(fake_api.goals) == 1


def test_track_visitor_given_a_visitor_id_string_says_to_use_track() -> None:
    tracker = GoalTracker(KEY, mode="disabled")
    with pytest.raises(TypeError, match=r"not a str; .*call track\(name, visitor_id='...'\)"):
        tracker.track_visitor("a3ab2331-989f-4cfa-91c6-2461c9e3c6bd", "signup")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes the Visitor that visitor_from_cookies"):
        tracker.track_visitor(["a3ab2331-989f-4cfa-91c6-2461c9e3c6bd"], "signup")  # type: ignore[arg-type]


def test_track_takes_name_and_metadata_by_position_and_a_visitor_only_by_keyword(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    tracker = make_tracker()
    visitor = fake_api.add_pageview("datafast")
    with pytest.raises(TypeError, match=r"pass a visitor id by keyword: track\(name, visitor_id="):
        tracker.track("signup", visitor)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="positional"):
        tracker.track("signup", {"plan": "pro"}, visitor)  # type: ignore[misc]
    assert tracker.track("signup", {"plan": "pro"}, visitor_id=visitor) is True
    assert tracker.track("trial", metadata={"days": 14}, visitor_id=visitor) is True
    assert tracker.track_visitor(goaltrack.Visitor(visitor, None), "paid", {"plan": "pro"})
    assert tracker.flush(10)
    assert sorted((g["name"], g["metadata"]) for g in fake_api.goals) == [
        ("paid", {"plan": "pro"}),
        ("signup", {"plan": "pro"}),
        ("trial", {"days": "14"}),
    ]


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "plausible"}, "unknown provider 'plausible'"),
        ({"api_url": "http://api.example.com"}, "plain http to a non-loopback host"),
        ({"api_key": "dft_token"}, "needs a website id"),
        ({"provider": "flowsery", "api_key": "df_key"}, "flowsery API key starts with 'flow_'"),
        (
            {"api_key": "pk_live_123"},
            r"datafast API key starts with 'df_' or 'dft_'; this one does not .*E005",
        ),
        (
            {"api_key": "flow_key"},
            r"looks like a flowsery key: set the provider to 'flowsery'",
        ),
        (
            {"api_url": "https://datafa.st/api/v1/goals"},
            r"already ends in '/api/v1/goals'.*set api_url to the base URL: 'https://datafa.st'",
        ),
        (
            {
                "provider": "flowsery",
                "api_key": "flow_key",
                "api_url": "https://analytics.flowsery.com/analytics/api/v1/goals/",
            },
            r"base URL: 'https://analytics.flowsery.com/analytics'",
        ),
        ({"provider": "flowsery", "api_key": "flow_ws_token"}, "needs a website id"),
        ({"mode": "eventually"}, "mode must be"),
        ({"max_queue_size": 0}, "max_queue_size must be at least 1"),
    ],
)
def test_bad_configuration_is_refused_with_the_reason(kwargs: dict[str, Any], message: str) -> None:
    kwargs.setdefault("api_key", KEY)
    with pytest.raises(InvalidConfiguration, match=message) as info:
        GoalTracker(**kwargs)
    assert kwargs["api_key"] not in str(info.value)


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_queue'"):
        GoalTracker(KEY, max_queue=5)


def test_key_never_appears_in_reprs_logs_or_errors(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_api.set_faults(fail_next=1, fail_status=500)
    recorder = Recorder()
    with caplog.at_level(logging.DEBUG):
        tracker = make_tracker(max_retries=0, **recorder.hooks())
        tracker.track("signup", visitor_id="b3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
        tracker.track("identify_me", visitor_id="b3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
        assert tracker.flush(10)
    texts = [repr(tracker), repr(tracker._transport), str(tracker.stats), caplog.text]
    texts += [repr(r) for _, r in recorder.failed] + [r.reason for _, r in recorder.failed]
    assert recorder.failed
    for text in texts:
        assert KEY not in text
    assert KEY not in str(fake_api.goals) + str(fake_api.requests)


# -- the process-wide tracker --------------------------------------------------------------------


def test_configure_from_environment_and_module_level_track(
    fake_api: FakeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOALTRACK_API_KEY", "flow_env_key")
    monkeypatch.setenv("GOALTRACK_PROVIDER", "flowsery")
    monkeypatch.setenv("GOALTRACK_API_URL", fake_api.api_url("flowsery"))
    tracker = goaltrack.configure(flush_at_exit=False)
    try:
        assert goaltrack.get_tracker() is tracker
        assert tracker.provider.name == "flowsery"
        goaltrack.track("from_module", visitor_id="vid_9")
        assert goaltrack.flush(10)
        assert fake_api.goals[0]["name"] == "from_module"
    finally:
        tracker.close(2)
        goaltrack.tracker._process_tracker = None


# -- processes: exit and fork --------------------------------------------------------------------


def run_python(code: str, fake_api: FakeAPIServer, timeout: float = 30) -> str:
    env = {**os.environ, "FAKE_API": fake_api.api_url("datafast"), "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_goals_queued_at_exit_are_flushed(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=200)
    run_python(
        f"""
        import os, goaltrack
        tracker = goaltrack.GoalTracker("df_k", api_url=os.environ["FAKE_API"])
        for i in range(5):
            tracker.track("at_exit", visitor_id="{visitor}", metadata={{"n": i}})
        # no flush: the interpreter's exit must deliver them
        """,
        fake_api,
    )
    assert sorted(g["metadata"]["n"] for g in fake_api.goals) == ["0", "1", "2", "3", "4"]


def test_goal_tracked_from_an_atexit_handler_is_still_delivered(fake_api: FakeAPIServer) -> None:
    # Python 3.12+ refuses new threads at shutdown: the exit flush must deliver it inline.
    visitor = fake_api.add_pageview("datafast")
    run_python(
        f"""
        import atexit, os, goaltrack
        tracker = goaltrack.GoalTracker("df_k", api_url=os.environ["FAKE_API"])
        atexit.register(lambda: tracker.track("at_shutdown", visitor_id="{visitor}"))
        """,
        fake_api,
    )
    assert [g["name"] for g in fake_api.goals] == ["at_shutdown"]


def test_exit_with_a_dead_api_is_bounded_by_shutdown_timeout(fake_api: FakeAPIServer) -> None:
    fake_api.stop()
    try:
        started = time.monotonic()
        out = run_python(
            """
            import os, goaltrack
            t = goaltrack.GoalTracker("df_k", api_url=os.environ["FAKE_API"], shutdown_timeout=1)
            t.track("doomed", visitor_id="a3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
            print("tracked")
            """,
            fake_api,
        )
        assert out.strip() == "tracked"
        assert time.monotonic() - started < 8
    finally:
        fake_api.start()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_forked_child_gets_its_own_worker_and_never_resends_the_parents_queue(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    fake_api.set_faults(latency_ms=300)
    tracker.track("parent_before_fork", visitor_id=visitor)
    tracker.track("parent_queued", visitor_id=visitor)
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            tracker.track("child", visitor_id=visitor)
            if tracker.flush(10) and tracker.stats.delivered == 1 and tracker.stats.queued == 1:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert tracker.flush(10)
    names = sorted(g["name"] for g in fake_api.goals)
    assert names == ["child", "parent_before_fork", "parent_queued"]
