"""The courier's event-loop HTTP client, over real HTTP to the fake API (and, for an idle close,
a loopback server that closes each connection after its answer)."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from goaltrack import get_provider
from goaltrack.delivery import DeliveryResult, Endpoint, Outcome, request_for, result_of
from goaltrack.goals import Goal
from goaltrack.http_client import MAX_RESPONSE_BYTES, HttpClient, HttpError, HttpResponse
from goaltrack.items import Tracked
from goaltrack.retry import RetryPolicy
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.base import Settlement
from goaltrack.transports.courier.aio_http import _IDLE_CHECK_AFTER, AsyncHttpClient
from tests.support.keys import DATAFAST_KEY
from tests.support.ports import free_port


def _request(fake_api: FakeAPIServer) -> tuple[Endpoint, Goal, str, dict[str, str], bytes]:
    provider = get_provider("datafast")
    endpoint = Endpoint(provider, DATAFAST_KEY, fake_api.api_url("datafast"), None)
    visitor = fake_api.add_pageview("datafast")
    goal = Goal.create(provider, "signup", visitor_id=visitor)
    url, headers, body = request_for(goal, endpoint)
    return endpoint, goal, url, dict(headers), body


async def _post(client: AsyncHttpClient, url: str, headers: dict[str, str], body: bytes) -> object:
    try:
        return await client.post(url, headers, body)
    except HttpError as exc:
        return exc


def test_delivers_over_one_kept_alive_connection(fake_api: FakeAPIServer) -> None:
    endpoint, goal, url, headers, body = _request(fake_api)

    async def run() -> tuple[list[HttpResponse], int]:
        client = AsyncHttpClient(timeout=5.0)
        answers = [await client.post(url, headers, body) for _ in range(3)]
        kept = sum(len(idle) for idle in client._idle.values())
        client.close()
        return answers, kept

    answers, kept = asyncio.run(run())
    assert [a.status for a in answers] == [200, 200, 200]
    assert all(result_of(goal, endpoint, a).outcome is Outcome.DELIVERED for a in answers)
    assert len(fake_api.goals) == 3
    assert kept == 1  # the three went one after the other on the same connection


def test_a_slow_api_ends_the_request_at_the_timeout(fake_api: FakeAPIServer) -> None:
    endpoint, goal, url, headers, body = _request(fake_api)
    fake_api.set_faults(latency_ms=20_000)

    async def run() -> tuple[object, float]:
        client = AsyncHttpClient(timeout=0.3)
        started = time.monotonic()
        answer = await _post(client, url, headers, body)
        took = time.monotonic() - started
        client.close()
        return answer, took

    answer, took = asyncio.run(run())
    assert isinstance(answer, HttpError)
    assert answer.may_have_arrived is True
    assert "no complete response within 0.3 s" in str(answer)
    assert took < 10.0  # the API would have answered after 20 s
    result = result_of(goal, endpoint, answer)
    assert result.outcome is Outcome.RETRY
    assert result.may_have_arrived is True


def test_a_huge_body_is_read_no_further_than_the_threads_client_reads(
    fake_api: FakeAPIServer,
) -> None:
    _, _, url, headers, body = _request(fake_api)
    fake_api.set_faults(huge_body_next=1, huge_body_bytes=3_000_000)
    threaded = HttpClient(timeout=5.0).post(url, headers, body)
    fake_api.set_faults(huge_body_next=1, huge_body_bytes=3_000_000)

    async def run() -> tuple[HttpResponse, HttpResponse]:
        client = AsyncHttpClient(timeout=5.0)
        huge = await client.post(url, headers, body)
        after = await client.post(url, headers, body)  # on a new connection: the old one went
        client.close()
        return huge, after

    huge, after = asyncio.run(run())
    assert (huge.status, len(huge.body)) == (threaded.status, len(threaded.body))
    assert len(huge.body) == MAX_RESPONSE_BYTES
    assert after.status == 200
    assert len(after.body) < 1000


def test_a_connection_reset_mid_request_may_have_delivered(fake_api: FakeAPIServer) -> None:
    endpoint, goal, url, headers, body = _request(fake_api)

    async def run() -> tuple[object, object]:
        client = AsyncHttpClient(timeout=5.0)
        await client.post(url, headers, body)  # a kept-alive connection, then the reset on it
        fake_api.set_faults(reset_next=1)
        reset = await _post(client, url, headers, body)
        after = await _post(client, url, headers, body)
        client.close()
        return reset, after

    reset, after = asyncio.run(run())
    assert isinstance(reset, HttpError)
    assert reset.may_have_arrived is True
    assert "connection broken" in str(reset)
    assert isinstance(after, HttpResponse)
    assert after.status == 200
    assert result_of(goal, endpoint, reset).outcome is Outcome.RETRY


@pytest.mark.parametrize(
    ("faults", "status", "retry_after", "may_have_arrived"),
    [
        ({"fail_next": 1, "fail_status": 503}, 503, None, True),
        ({"rate_limit_next": 1, "retry_after": 7}, 429, 7.0, False),
    ],
)
def test_503_and_429_are_retried_with_their_retry_after(
    fake_api: FakeAPIServer,
    faults: dict[str, object],
    status: int,
    retry_after: float | None,
    may_have_arrived: bool,
) -> None:
    endpoint, goal, url, headers, body = _request(fake_api)
    fake_api.set_faults(**faults)

    async def run() -> HttpResponse:
        client = AsyncHttpClient(timeout=5.0)
        answer = await client.post(url, headers, body)
        client.close()
        return answer

    answer = asyncio.run(run())
    threaded = HttpClient(timeout=5.0)
    fake_api.set_faults(**faults)
    expected = result_of(goal, endpoint, threaded.post(url, headers, body))
    result = result_of(goal, endpoint, answer)
    assert result == expected  # one reading of the answer, whichever client got it
    assert result.outcome is Outcome.RETRY
    assert result.status == status
    assert result.may_have_arrived is may_have_arrived
    if retry_after is not None:
        assert result.retry_after == retry_after


def test_no_connection_means_not_delivered_and_no_key_in_the_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1/goals"
    headers = {"Authorization": f"Bearer {DATAFAST_KEY}"}

    async def run() -> object:
        client = AsyncHttpClient(timeout=5.0)
        answer = await _post(client, url, headers, b"{}")
        client.close()
        return answer

    answer = asyncio.run(run())
    assert isinstance(answer, HttpError)
    assert answer.may_have_arrived is False
    assert "connection failed" in str(answer)
    assert DATAFAST_KEY not in str(answer)


def test_a_header_that_would_split_the_request_is_refused_without_its_value() -> None:
    headers = {"Authorization": f"Bearer {DATAFAST_KEY}\r\nX-Injected: 1"}

    async def run() -> object:
        client = AsyncHttpClient(timeout=5.0)
        answer = await _post(client, "http://127.0.0.1:9/api/v1/goals", headers, b"{}")
        client.close()
        return answer

    answer = asyncio.run(run())
    assert isinstance(answer, HttpError)
    assert answer.may_have_arrived is False
    assert DATAFAST_KEY not in str(answer)


@pytest.fixture
def closing_server() -> Iterator[tuple[str, list[int]]]:
    """A loopback HTTP server that answers each connection's first request, then closes it;
    yields its URL and the number of connections it accepted so far."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted[0] += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1/goals", accepted
    stop.set()
    with socket.create_connection(listener.getsockname()):  # wakes the accept() up
        pass
    thread.join(5)
    listener.close()


def test_an_idle_connection_the_server_closed_is_replaced_before_sending(
    closing_server: tuple[str, list[int]],
) -> None:
    url, accepted = closing_server

    async def run() -> list[object]:
        client = AsyncHttpClient(timeout=5.0)
        first = await _post(client, url, {}, b"{}")
        idle = [c for conns in client._idle.values() for c in conns]
        deadline = time.monotonic() + 10.0
        while any(c.reusable for c in idle) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop reads the server's close
        second = await _post(client, url, {}, b"{}")
        client.close()
        return [first, second]

    answers = asyncio.run(run())
    assert all(isinstance(a, HttpResponse) and a.status == 200 for a in answers), answers
    assert accepted[0] == 2


def test_closing_the_client_ends_a_request_in_flight_at_once(fake_api: FakeAPIServer) -> None:
    _, _, url, headers, body = _request(fake_api)
    fake_api.set_faults(latency_ms=20_000)

    async def run() -> tuple[object, float]:
        client = AsyncHttpClient(timeout=60.0)
        pending = asyncio.ensure_future(_post(client, url, headers, body))
        deadline = time.monotonic() + 10.0
        while not client._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # sent, waiting for the answer
        started = time.monotonic()
        client.close()
        answer = await pending
        return answer, time.monotonic() - started

    answer, took = asyncio.run(run())
    assert isinstance(answer, HttpError)
    assert "interrupted" in str(answer)
    assert answer.may_have_arrived is True
    assert took < 10.0


def test_a_long_idle_connection_is_asked_whether_the_server_closed_it_before_sending(
    closing_server: tuple[str, list[int]],
) -> None:
    url, accepted = closing_server

    async def run() -> list[object]:
        client = AsyncHttpClient(timeout=5.0)
        first = await _post(client, url, {}, b"{}")
        [connection] = [c for conns in client._idle.values() for c in conns]
        sock = connection._transport.get_extra_info("socket")  # type: ignore[union-attr]
        # Blocks the loop until the server's close arrived: the loop has not read it.
        readable, _, _ = select.select([sock.fileno()], [], [], 10.0)
        assert readable
        assert connection.reusable
        connection.idle_since -= 2 * _IDLE_CHECK_AFTER  # as if idle for seconds
        second = await _post(client, url, {}, b"{}")
        client.close()
        return [first, second]

    answers = asyncio.run(run())
    assert all(isinstance(a, HttpResponse) and a.status == 200 for a in answers), answers
    assert accepted[0] == 2


def test_a_goal_whose_settling_fails_waits_again_and_is_delivered(
    fake_api: FakeAPIServer,
) -> None:
    # The courier's loop settles through BackgroundTransport.finish(): an error there (a bug of
    # ours) must leave the goal waiting, as a worker thread's death does, not lose it.
    class FailsOnce(Settlement):
        failed_once = False

        def delivered(
            self, goal: Tracked, result: DeliveryResult, *, maybe_duplicate: bool
        ) -> None:
            if not self.failed_once:
                self.failed_once = True
                raise RuntimeError("a bug while settling")
            super().delivered(goal, result, maybe_duplicate=maybe_duplicate)

    provider = get_provider("datafast")
    endpoint = Endpoint(provider, DATAFAST_KEY, fake_api.api_url("datafast"), None)
    settlement = FailsOnce()
    transport = BackgroundTransport(
        endpoint,
        settlement,
        retry=RetryPolicy(),
        http=lambda: HttpClient(timeout=5),
        threads=False,
        flush_at_exit=False,
    )
    visitor = fake_api.add_pageview("datafast")
    transport.submit(Goal.create(provider, "signup", visitor_id=visitor))
    client = HttpClient(timeout=5)
    try:
        first = transport.take_ready()
        assert first is not None
        assert not isinstance(first, float)
        url, headers, body = request_for(first.goal, endpoint)
        answer = client.post(url, headers, body)
        with pytest.raises(RuntimeError):
            transport.finish(first, result_of(first.goal, endpoint, answer))
        assert not transport.all_settled()
        wait = transport.take_ready()
        assert isinstance(wait, float)  # waiting again, due a moment later
        deadline = time.monotonic() + 10
        again = transport.take_ready()
        while not hasattr(again, "goal") and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a deadline-bound wait for its due time
            again = transport.take_ready()
        assert again is first
        answer = client.post(url, headers, body)
        transport.finish(first, result_of(first.goal, endpoint, answer))
        assert transport.all_settled()
        assert transport.stats.delivered == 1
    finally:
        client.close()
        transport.close(1)
