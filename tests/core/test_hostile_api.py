"""Nothing from the network can stop delivery or leak the key.

Over real HTTP against a loopback API (:mod:`tests.support.hostile_api`) that sends absurd
``Retry-After`` values or echoes the request's ``Authorization`` header into its error bodies;
plus what a worker thread dying, ``flush()`` from a hook, too many trackers and look-alike
loopback names do.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from goaltrack import GoalTracker, InvalidConfiguration, process
from goaltrack.delivery import Endpoint, check_api_url, is_loopback, parse_retry_after, probe
from goaltrack.http_client import HttpClient
from goaltrack.providers import get_provider
from goaltrack.testing.fake_api.faults import check_faults
from goaltrack.testing.server import FakeAPIServer
from tests.support.hostile_api import VISITOR, HostileAPI, Seen, error
from tests.support.hostile_api import make_tracker as make
from tests.support.keys import DATAFAST_KEY as KEY


def _a_day_ahead() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)


ABSURD = ["inf", "1e400", "1e10", "86400", "-5", "nan", "soon", "Mon, 99 Foo 2026", "DAY"]


@pytest.mark.slow
@pytest.mark.parametrize("value", ABSURD)
def test_absurd_retry_after_never_stops_delivery(
    api: HostileAPI, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    header = _a_day_ahead() if value == "DAY" else value
    limited = [0]
    lock = threading.Lock()

    def behaviour(seen: Seen) -> tuple[int, dict[str, str], bytes] | None:
        with lock:
            if limited[0] < 12:
                limited[0] += 1
                return error(429, "slow down", {"Retry-After": header})
        return None

    api.behaviour = behaviour
    tracker = make(api, backoff_max=1.0)
    try:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            for n in range(40):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
            # backoff_max bounds every wait: the 12 refusals cost seconds, not a day.
            assert tracker.flush(25), tracker.stats
            stats = tracker.stats
    finally:
        tracker.close(5)
    assert sorted(api.delivered, key=int) == [str(n) for n in range(40)]
    assert (stats.delivered, stats.failed, stats.dropped) == (40, 0, 0)
    assert not any("died" in r.getMessage() for r in caplog.records)


def test_parse_retry_after_is_defensive() -> None:
    now = 1_000_000.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("86400", cap=60.0) == 60.0
    for value in ("inf", "-inf", "1e400", "1e10", "nan", "-1", "soon", "", None, "Mon, 99 Foo"):
        assert parse_retry_after(value) is None, value
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    far = format_datetime(datetime.fromtimestamp(now + 86400, UTC), usegmt=True)
    assert parse_retry_after(far, now=now, cap=60.0) == 60.0


def _echo(status: int) -> tuple[int, dict[str, str], bytes]:
    def answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
        # A proxy's debugging error page: the request's headers, key included, in the body.
        body = f"error {status}; you sent Authorization: {seen.authorization}\r\n\x1b[31mX"
        return status, {}, body.encode()

    return answer  # type: ignore[return-value]


def test_a_key_echoed_in_error_bodies_appears_in_no_log_reason_or_stat(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    refused_once = [False]

    def behaviour(seen: Seen) -> tuple[int, dict[str, str], bytes] | None:
        name = seen.goal.get("name")
        if name == "bad":
            return _echo(400)(seen)  # type: ignore[operator]
        if name == "flaky" and not refused_once[0]:
            refused_once[0] = True
            return _echo(401)(seen)  # type: ignore[operator]
        if name == "flaky5xx" and len([r for r in api.requests if r.status == 502]) < 2:
            return _echo(502)(seen)  # type: ignore[operator]
        return None

    api.behaviour = behaviour
    reasons: list[str] = []
    tracker = make(
        api,
        backoff_max=0.3,
        on_failure=lambda goal, result: reasons.append(result.reason),
        on_delivery=lambda goal, result: reasons.append(result.reason),
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="goaltrack"):
            for name in ("bad", "flaky", "flaky5xx", "fine"):
                tracker.track(name, visitor_id=VISITOR, metadata={"n": name})
            assert tracker.flush(20)
            http = HttpClient(timeout=5)
            try:
                endpoint = Endpoint(get_provider("datafast"), KEY, api.url, None)
                api.behaviour = lambda seen: _echo(401)(seen)  # type: ignore[operator]
                ok, message = probe(endpoint, http)
            finally:
                http.close()
    finally:
        tracker.close(5)
    assert not ok
    assert "refused the key" in message
    assert any(r.status in (401, 400, 502) for r in api.requests)
    assert KEY in api.requests[0].authorization  # the server did get the key: it was echoed
    texts = [r.getMessage() for r in caplog.records] + reasons + [message, repr(tracker.stats)]
    assert any("error 400" in text for text in texts)  # the echoing bodies did reach the logs
    for text in texts:
        assert KEY not in text
        assert "\r" not in text
        assert "\n" not in text
        assert "\x1b" not in text


def test_a_worker_that_dies_is_logged_once_and_replaced(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(api, max_in_flight=2, delivery_process=False)
    transport = tracker._transport
    real_settle = transport._settle  # type: ignore[attr-defined]
    broke = [False]

    def settle_with_a_bug(item: object, result: object) -> None:
        if not broke[0]:
            broke[0] = True
            raise RuntimeError("a bug in the worker")
        real_settle(item, result)

    transport._settle = settle_with_a_bug  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            for n in range(20):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
            assert tracker.flush(15)
            alive = [t for t in transport._threads if t.is_alive()]  # type: ignore[attr-defined]
    finally:
        tracker.close(5)
    died = [r for r in caplog.records if "died" in r.getMessage()]
    assert len(died) == 1
    assert died[0].exc_info is not None  # with the traceback
    assert len(alive) == 2  # replaced
    assert sorted(set(api.delivered), key=int) == [str(n) for n in range(20)]


def test_flush_from_a_hook_returns_false_at_once_instead_of_deadlocking(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[tuple[bool, float]] = []
    trackers: list[GoalTracker] = []

    def on_delivery(goal: object, result: object) -> None:
        started = time.monotonic()
        answers.append((trackers[0].flush(10), time.monotonic() - started))

    tracker = make(api, on_delivery=on_delivery)
    trackers.append(tracker)
    try:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            for n in range(3):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
            assert tracker.flush(10)
    finally:
        tracker.close(5)
    assert len(answers) == 3
    assert all(flushed is False and took < 1.0 for flushed, took in answers)
    warnings = [
        r for r in caplog.records if "flush() was called from a delivery thread" in r.message
    ]
    assert len(warnings) == 1


def test_many_live_trackers_are_warned_about_once(
    api: HostileAPI, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_warned_many", False)
    monkeypatch.setattr(process, "_live", type(process._live)())
    trackers = []
    try:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            for _ in range(process.MANY_TRACKERS + 4):
                trackers.append(make(api))
                trackers[-1].track("signup", visitor_id=VISITOR, metadata={"n": "0"})
    finally:
        for tracker in trackers:
            tracker.close(5)
    warnings = [r for r in caplog.records if "trackers are alive" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{process.MANY_TRACKERS + 1} trackers" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("evil.localhost", False),
        ("localhost.evil.com", False),
        ("128.0.0.1", False),
    ],
)
def test_only_localhost_127_8_and_ipv6_loopback_count_as_loopback(
    host: str, loopback: bool
) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_to_a_localhost_subdomain_is_refused() -> None:
    with pytest.raises(InvalidConfiguration):
        check_api_url("http://evil.localhost:8000")


@pytest.mark.slow
@pytest.mark.parametrize("value", ["inf", "1e400", "DAY"])
def test_the_fake_apis_absurd_retry_after_and_echoed_key_neither_stop_nor_leak(
    fake_api: FakeAPIServer, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = "df_fake_api_echo_key_0123456789"
    visitor = fake_api.add_pageview("datafast")
    header = _a_day_ahead() if value == "DAY" else value
    fake_api.set_faults(rate_limit_next=6, retry_after_raw=header, echo_authorization=True)
    reasons: list[str] = []
    tracker = GoalTracker(
        key,
        api_url=fake_api.api_url("datafast"),
        flush_at_exit=False,
        backoff_max=1.0,
        on_failure=lambda goal, result: reasons.append(result.reason),
    )
    try:
        with caplog.at_level(logging.DEBUG, logger="goaltrack"):
            for n in range(10):
                tracker.track("signup", visitor_id=visitor, metadata={"id": str(n)})
            tracker.track("unknown", visitor_id=str(uuid.uuid4()))  # a 404 echoing the key
            assert tracker.flush(20)
    finally:
        tracker.close(5)
    assert [r["status"] for r in fake_api.requests].count(429) == 6
    assert len(fake_api.goals) == 10
    assert len(reasons) == 1
    assert "you sent Authorization" in reasons[0]  # the echo reached the reason, redacted
    for text in [r.getMessage() for r in caplog.records] + reasons:
        assert key not in text


def test_the_fake_apis_new_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="retry_after_raw"):
        check_faults({"retry_after_raw": "1\r\nX-Injected: yes"})
    with pytest.raises(ValueError, match="refuse_key_for"):
        check_faults({"refuse_key_for": 0})
    with pytest.raises(ValueError, match="echo_authorization"):
        check_faults({"echo_authorization": "yes"})
