"""Run the fake provider API under uvicorn in a background thread.

This module owns the listening socket (bound here, so that a server started on port 0 keeps its
port across stop() and start()), the uvicorn thread with its start/stop handshake, and the
loopback-only safety check. The app and its rules live in :mod:`goaltrack.testing.fake_api`.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from goaltrack.delivery import is_loopback
from goaltrack.testing.fake_api import (
    PROVIDERS,
    FakeAPIState,
    GoalRecord,
    PaymentRecord,
    RequestRecord,
    create_app,
)

__all__ = ["FakeAPIServer"]

START_TIMEOUT_S = 10.0


class FakeAPIServer:
    """The fake API on a real port, for tests and demos.

    ``with FakeAPIServer() as server:`` starts it on a free loopback port; point a client at
    ``server.api_url("datafast")``. Stopping and starting again reuses the port, which is how a
    test makes the API refuse connections for a while. Extra keyword arguments go to
    :class:`FakeAPIState` when no ``state`` is given. Hosts other than loopback are refused unless
    ``allow_non_loopback=True``: the fake accepts any well-formed key and must not face a network.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state: FakeAPIState | None = None,
        *,
        allow_non_loopback: bool = False,
        **state_kwargs: Any,
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise ValueError(
                f"refusing to serve the fake API on {host!r}: not a loopback address"
                " (pass allow_non_loopback=True if you really mean it)"
            )
        if state is not None and state_kwargs:
            raise TypeError("pass either state or FakeAPIState keyword arguments, not both")
        self.host = host
        self.state = state if state is not None else FakeAPIState(**state_kwargs)
        self._app = create_app(self.state)
        self._port = port
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    # -- lifecycle

    def start(self) -> None:
        """Bind, serve in a daemon thread, and return once connections are accepted."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"the fake API is already running at {self.url}")
            sock = self._bind()
            self._app.state.fake_api_stopping.clear()
            config = uvicorn.Config(
                self._app,
                # Leave the host application's logging alone: uvicorn's log_level and
                # access_log=False would reconfigure the process-wide "uvicorn.*" loggers.
                log_config=None,
                log_level=None,
                access_log=True,
                lifespan="off",
                http="h11",
                ws="none",
                loop="asyncio",
            )
            server = uvicorn.Server(config)
            self._error = None
            thread = threading.Thread(
                target=self._serve,
                args=(server, sock),
                name=f"goaltrack-fake-api-{self._port}",
                daemon=True,
            )
            self._server, self._thread, self._socket = server, thread, sock
            thread.start()
            deadline = time.monotonic() + START_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    self._stop_locked(timeout=1.0)
                    raise RuntimeError(
                        f"the fake API did not start on {self.url}"
                        + ("" if self._error else f" within {START_TIMEOUT_S:g} s")
                    ) from self._error
                # uvicorn offers a flag, not an event, for "started".
                time.sleep(0.005)

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down and wait for the server thread; connections are refused afterwards.

        Requests a blackhole holds are let go first: their connections close unanswered.
        """
        with self._lock:
            self._stop_locked(timeout)

    def request_stop(self) -> None:
        """Ask the server to shut down, without waiting: safe to call from a signal handler.

        A second call while the first is in progress asks for an immediate shutdown.
        """
        server = self._server
        if server is not None:
            self._app.state.fake_api_stopping.set()
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the server thread to end; True if it has (or never ran)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def __enter__(self) -> FakeAPIServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on connections of a socket whose
        # proto says TCP, and without it every response waits ~40 ms on Nagle + delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        # Lets a restart rebind the port while old connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        return sock

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by start(); a thread has nobody else to tell
            self._error = exc

    def _stop_locked(self, timeout: float) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        if server is None or thread is None or sock is None:
            return
        self._app.state.fake_api_stopping.set()  # requests held by a blackhole let go
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        sock.close()
        self._server = self._thread = self._socket = None
        if thread.is_alive():
            raise RuntimeError(f"the fake API at {self.url} did not stop within {2 * timeout:g} s")

    # -- addresses

    @property
    def port(self) -> int:
        """The bound port (known once started; kept across restarts)."""
        if self._port == 0:
            raise RuntimeError("the fake API has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """The server's origin, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def api_url(self, provider: str) -> str:
        """The base URL a goaltrack client uses for ``provider`` (it appends /api/v1/goals)."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        return f"{self.url}/{provider}"

    # -- the state, for convenience

    @property
    def goals(self) -> list[GoalRecord]:
        return self.state.goals

    @property
    def payments(self) -> list[PaymentRecord]:
        return self.state.payments

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    def add_pageview(
        self, provider: str, visitor_id: str | None = None, *, bot: bool = False
    ) -> str:
        return self.state.add_pageview(provider, visitor_id, bot=bot)

    def set_faults(self, **fields: object) -> dict[str, object]:
        return self.state.set_faults(**fields)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def outage_windows(self) -> list[tuple[float, float]]:
        return self.state.outage_windows()

    def wait_for_goals(self, count: int, timeout: float = 10.0) -> list[GoalRecord]:
        return self.state.wait_for_goals(count, timeout)

    def wait_for_payments(self, count: int, timeout: float = 10.0) -> list[PaymentRecord]:
        return self.state.wait_for_payments(count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RequestRecord]:
        return self.state.wait_for_requests(count, timeout)

    def reset(self, *, keep_pageviews: bool = False) -> None:
        self.state.reset(keep_pageviews=keep_pageviews)
