"""The Celery transport with a real Redis broker and a real Celery worker process.

The tests start their own ``redis-server`` on a free loopback port (skipped, saying so, when the
binary is missing: ``apt-get install redis-server``) and one ``celery worker --pool=solo``
subprocess, configured from ``GOALTRACK_*`` variables like a real deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.support.paths import REPO

pytest.importorskip("celery", reason="pip install 'goaltrack[celery]'")
redis = pytest.importorskip("redis", reason="pip install redis")

from goaltrack import GoalTracker  # noqa: E402
from goaltrack.testing.server import FakeAPIServer  # noqa: E402
from tests.support.keys import DATAFAST_KEY as KEY  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

QUEUE = "goaltrack-tests"
NO_DISK = ("--save", "", "--appendonly", "no")
WORKER = ("--pool=solo", "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir, *NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)  # polling interval of a deadline-bound wait for the port
        client.close()
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def worker(redis_url: str, fake_api_server: FakeAPIServer) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "GOALTRACK_TEST_BROKER": redis_url,
        "GOALTRACK_API_KEY": KEY,
        "GOALTRACK_API_URL": fake_api_server.api_url("datafast"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("GOALTRACK_MODE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.support.celery_app", "worker", *WORKER],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        output = process.stdout.read() if process.stdout else ""
        assert KEY not in output


@pytest.fixture
def celery_app(redis_url: str) -> object:
    from tests.support.celery_app import make_app

    return make_app(redis_url)


def tracker_for(fake_api: FakeAPIServer, app: object, **options: object) -> GoalTracker:
    return GoalTracker(
        KEY,
        api_url=fake_api.api_url("datafast"),
        mode="celery",
        celery_app=app,
        flush_at_exit=False,
        **options,
    )


def test_goals_go_through_the_broker_and_the_worker_delivers_each_once(
    fake_api: FakeAPIServer, celery_app: object, worker: subprocess.Popen[str]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = tracker_for(fake_api, celery_app)
    for i in range(30):
        tracker.track("signup", visitor_id=visitor, metadata={"id": str(i)})
    assert tracker.stats.queued == 30
    fake_api.wait_for_goals(30, timeout=30)
    assert Counter(g["metadata"]["id"] for g in fake_api.goals) == Counter(
        str(i) for i in range(30)
    )


def test_transient_failures_are_retried_by_celery_and_final_ones_are_not(
    fake_api: FakeAPIServer, celery_app: object, worker: subprocess.Popen[str]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    stranger = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"  # no pageview: 404, final
    tracker = tracker_for(fake_api, celery_app)
    fake_api.set_faults(fail_next=2, fail_status=503)
    tracker.track("retried", visitor_id=visitor)
    fake_api.wait_for_goals(1, timeout=30)
    tracker.track("refused", visitor_id=stranger)
    tracker.track("sentinel", visitor_id=visitor)
    fake_api.wait_for_goals(2, timeout=30)
    statuses = [(r["name"], r["status"]) for r in fake_api.requests]
    assert statuses.count((None, 503)) == 2  # injected before the body is read
    assert statuses.count(("retried", 200)) == 1
    assert statuses.count(("refused", 404)) == 1  # once: a final failure is not retried
    assert [g["name"] for g in fake_api.goals] == ["retried", "sentinel"]


@pytest.mark.slow
def test_an_outage_is_probed_not_hammered_and_every_goal_arrives_after_it(
    fake_api: FakeAPIServer, celery_app: object, worker: subprocess.Popen[str]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = tracker_for(fake_api, celery_app)
    fake_api.set_faults(down_for=3.0)
    [(start, back)] = fake_api.outage_windows()
    for i in range(20):
        tracker.track("signup", visitor_id=visitor, metadata={"id": str(i)})
    fake_api.wait_for_goals(20, timeout=30)
    assert sorted(int(g["metadata"]["id"]) for g in fake_api.goals) == list(range(20))
    while_down = [r for r in fake_api.requests if start <= r["received_at_epoch"] < back]
    # The worker's tasks share one breaker: three failures, then probes up to 1 s apart (the
    # others wait without a request), not 20 tasks retrying on their own backoff.
    assert len(while_down) <= 3 + 2 + 3.0 / 0.8, len(while_down)
    first_after = min(g["received_at_epoch"] for g in fake_api.goals)
    # A probe at most 1 s apart, then Celery's own scheduling of the task retried with a
    # countdown (the solo worker runs one task at a time): 1.84 s seen on a loaded machine.
    assert first_after - back <= 3.0


def test_the_task_message_carries_the_goal_but_never_the_api_key(
    fake_api: FakeAPIServer, celery_app: object, redis_url: str
) -> None:
    tracker = tracker_for(fake_api, celery_app, celery_queue="goaltrack-inspected")
    visitor = fake_api.add_pageview("datafast")
    tracker.track("signup", visitor_id=visitor, metadata={"plan": "pro"})
    client = redis.Redis.from_url(redis_url)
    try:
        [raw] = client.lrange("goaltrack-inspected", 0, -1)
    finally:
        client.delete("goaltrack-inspected")
        client.close()
    assert KEY.encode() not in raw
    message = json.loads(raw)
    assert message["headers"]["task"] == "goaltrack.deliver_goal"
    assert visitor.encode() in raw


def test_a_broker_that_is_down_drops_the_goal_at_once_and_counts_it(
    fake_api: FakeAPIServer,
) -> None:
    from celery import Celery

    app = Celery("down", broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.broker_connection_timeout = 1
    tracker = tracker_for(fake_api, app)
    started = time.monotonic()
    assert tracker.track_visitor(None, "signup") is False  # no visitor: not even sent
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    assert time.monotonic() - started < 5
    assert tracker.stats.dropped == 1


def test_payments_go_through_the_broker_and_the_same_task_delivers_them(
    fake_api: FakeAPIServer, celery_app: object, worker: subprocess.Popen[str]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = tracker_for(fake_api, celery_app)
    fake_api.set_faults(fail_next=1, fail_status=503)  # retried by Celery, as goals are
    assert tracker.track_payment(19.5, "usd", "ch_celery", visitor_id=visitor, renewal=True)
    assert tracker.track("checkout", visitor_id=visitor)
    assert (tracker.stats.payments.queued, tracker.stats.goals.queued) == (1, 1)
    [payment] = fake_api.wait_for_payments(1, timeout=30)
    fake_api.wait_for_goals(1, timeout=30)
    assert (payment["transaction_id"], payment["amount"], payment["currency"]) == (
        "ch_celery",
        19.5,
        "USD",
    )
    assert (payment["visitor_id"], payment["renewal"]) == (visitor, True)
