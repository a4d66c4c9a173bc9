"""goaltrack.serverless: which platform runs the process, the deadline of the wait before the
freeze, what the tracker says and does there, and ``lambda_handler`` against the fake API.

(The freeze itself, under each adapter: ``tests/system/test_serverless.py``.)
"""

from __future__ import annotations

import logging

import pytest

from goaltrack import GoalTracker
from goaltrack import serverless as sls
from goaltrack.adapter import Adapter
from goaltrack.asgi.signals import signals
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports import BackgroundTransport
from tests.support.keys import DATAFAST_KEY

PLATFORM_VARIABLES = ("VERCEL", "AWS_LAMBDA_FUNCTION_NAME", "K_SERVICE", "FUNCTIONS_WORKER_RUNTIME")


class Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def no_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sls, "_announced", set())


@pytest.fixture
def on_lambda(no_platform: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "shop")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"AWS_LAMBDA_FUNCTION_NAME": "shop"}, "AWS Lambda"),
        ({"K_SERVICE": "shop"}, "Google Cloud Run"),
        ({"VERCEL": "1", "AWS_LAMBDA_FUNCTION_NAME": "x"}, "Vercel"),
        ({"FUNCTIONS_WORKER_RUNTIME": "python"}, "Azure Functions"),
        ({"AWS_LAMBDA_FUNCTION_NAME": ""}, None),
    ],
)
def test_the_platform_is_named_by_its_variables(
    environ: dict[str, str], expected: str | None
) -> None:
    found = sls.detect(environ)
    assert (found.name if found else None) == expected


def test_the_option_overrides_detection() -> None:
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "shop"}
    assert sls.platform_for(None, lambda_env) is sls.detect(lambda_env)
    assert sls.platform_for(False, lambda_env) is None
    assert sls.platform_for(True, {}) is sls.GIVEN
    assert sls.platform_for(None, {}) is None


@pytest.mark.parametrize(
    ("limit", "remaining_ms", "expected"),
    [(2.0, 10_000, 2.0), (2.0, 1_200, 0.7), (2.0, 300, 0.0), (0.5, 800, 0.3)],
)
def test_the_wait_ends_before_the_invocation_s_deadline(
    limit: float, remaining_ms: int, expected: float
) -> None:
    assert sls.flush_deadline(limit, Context(remaining_ms)) == pytest.approx(expected)


def test_without_a_lambda_context_the_limit_alone() -> None:
    assert sls.flush_deadline(2.0, None) == 2.0

    class Broken:
        def get_remaining_time_in_millis(self) -> int:
            raise RuntimeError("not a real context")

    assert sls.flush_deadline(2.0, Broken()) == 2.0


@pytest.mark.parametrize("key", ["aws.context", "apig_wsgi.context", "serverless.context"])
def test_the_lambda_adapters_carry_the_context(key: str) -> None:
    context = Context(1000)
    assert sls.lambda_context_in({key: context, "type": "http"}) is context
    assert sls.lambda_context_in({key: "not a context"}) is None
    assert sls.lambda_context_in(None) is None


def test_on_a_platform_the_tracker_delivers_from_its_own_threads(
    on_lambda: None, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="goaltrack")
    api_url = fake_api.api_url("datafast")
    with GoalTracker(DATAFAST_KEY, api_url=api_url) as tracker:
        assert tracker.platform is not None
        assert tracker.platform.name == "AWS Lambda"
        assert isinstance(tracker._transport, BackgroundTransport)
    with GoalTracker(DATAFAST_KEY, api_url=api_url, serverless=False) as tracker:
        assert tracker.platform is None
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len([line for line in said if "on AWS Lambda" in line]) == 1, said
    assert "AWS_LAMBDA_FUNCTION_NAME is set" in said[0]
    assert "serverless=False turns this off" in said[0]


def test_an_outbox_on_the_instance_disk_is_warned_about(
    on_lambda: None, fake_api: FakeAPIServer, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = f"{tmp_path}/goals.sqlite3"
    with GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"), outbox=outbox):
        pass
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert outbox in warning
    assert "does not outlive the instance" in warning
    assert "mode='celery'" in warning


def test_a_shutdown_timeout_past_cloud_run_s_grace_is_warned_about(
    no_platform: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("K_SERVICE", "shop")
    GoalTracker(None, shutdown_timeout=12).close()
    GoalTracker(None, shutdown_timeout=3).close()
    warnings = [r.getMessage() for r in caplog.records if "shutdown_timeout" in r.getMessage()]
    assert len(warnings) == 1
    assert "12 s" in warnings[0]
    assert "10 s after SIGTERM" in warnings[0]


def test_adapters_wait_at_request_end_on_a_platform(on_lambda: None) -> None:
    on_platform = GoalTracker(None, mode="disabled")
    off = GoalTracker(None, mode="disabled", serverless=False)
    assert Adapter(signals, on_platform).request_end_flush(on_platform) == 2.0
    assert Adapter(signals, off).request_end_flush(off) is None
    configured = Adapter(signals, on_platform, flush_at_request_end=0.5)
    assert configured.request_end_flush(on_platform) == 0.5


# -- lambda_handler ------------------------------------------------------------------------------


def test_the_decorated_handler_returns_once_its_goals_are_delivered(
    no_platform: None, fake_api: FakeAPIServer
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))
    fake_api.set_faults(latency_ms=100)

    @sls.lambda_handler(tracker=tracker)
    def handler(event: dict[str, int], context: object) -> str:
        for n in range(event["goals"]):
            tracker.track("purchase", {"n": n}, visitor_id=visitor)
        return "done"

    try:
        assert handler({"goals": 3}, Context(3000)) == "done"
        assert len(fake_api.goals) == 3  # no wait: they were delivered before it returned
    finally:
        tracker.close()


def test_a_handler_that_raises_still_delivers_first(
    no_platform: None, fake_api: FakeAPIServer
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))
    fake_api.set_faults(latency_ms=100)

    @sls.lambda_handler(tracker=tracker)
    def handler(event: object, context: object) -> None:
        tracker.track("purchase", visitor_id=visitor)
        raise ValueError("the order is gone")

    try:
        with pytest.raises(ValueError, match="the order is gone"):
            handler({}, Context(3000))
        assert len(fake_api.goals) == 1
    finally:
        tracker.close()


def test_the_process_wide_tracker_by_default(
    no_platform: None, fake_api: FakeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import goaltrack

    visitor = fake_api.add_pageview("datafast")
    tracker = goaltrack.configure(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))
    fake_api.set_faults(latency_ms=100)

    @sls.lambda_handler
    def handler(event: object, context: object) -> None:
        goaltrack.track("purchase", visitor_id=visitor)

    try:
        handler({}, Context(3000))
        assert len(fake_api.goals) == 1
    finally:
        tracker.close()


def test_a_negative_timeout_is_an_error_at_decoration() -> None:
    with pytest.raises(ValueError, match="timeout must not be negative"):
        sls.lambda_handler(timeout=-1)
