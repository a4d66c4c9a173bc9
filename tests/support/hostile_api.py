"""A small loopback API for the tests of faults the fake API's happy path does not choose.

It speaks the goals endpoint well enough for goaltrack (a 200 with an event id), records every
request it receives (when, with which Authorization header, which goal), and answers according
to a behaviour the test sets: refuse the key for a while (401 then 403), echo the request's
Authorization header into error bodies, send absurd ``Retry-After`` values, or refuse
connections altogether (:meth:`HostileAPI.stop` closes the listening socket; :meth:`start`
opens it again on the same port).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from goaltrack import GoalTracker
from tests.support.keys import DATAFAST_KEY
from tests.support.ports import free_port

VISITOR = "7f3c1a2e-4b5d-4e6f-8a9b-0c1d2e3f4a5b"

Answer = tuple[int, dict[str, str], bytes]
Behaviour = Callable[["Seen"], Answer | None]
"""Given a request, the answer to give, or None for the normal 200."""


@dataclass(frozen=True)
class Seen:
    at: float
    """``time.monotonic()`` when the request arrived."""
    authorization: str
    goal: dict[str, object]
    status: int = 0


@dataclass
class _Record:
    requests: list[Seen] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    """The ``n`` metadata of each goal answered with a 200, in order."""


class HostileAPI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._record = _Record()
        self.behaviour: Behaviour | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = free_port()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what it saw ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._record.requests)

    @property
    def delivered(self) -> list[str]:
        with self._lock:
            return list(self._record.delivered)

    def requests_between(self, start: float, end: float) -> int:
        return sum(1 for seen in self.requests if start <= seen.at < end)

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with api._lock:
                    api._connections.add(self.connection)

            def finish(self) -> None:
                with api._lock:
                    api._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    goal = json.loads(raw)
                except ValueError:
                    goal = {}
                seen = Seen(time.monotonic(), self.headers.get("Authorization") or "", goal)
                answer = api.behaviour(seen) if api.behaviour is not None else None
                if answer is None:
                    event = uuid.uuid4().hex[:24]
                    answer = (
                        200,
                        {},
                        json.dumps({"status": "success", "data": [{"eventId": event}]}).encode(),
                    )
                status, headers, body = answer
                with api._lock:
                    api._record.requests.append(
                        Seen(seen.at, seen.authorization, seen.goal, status)
                    )
                    if status == 200:
                        metadata = goal.get("metadata") if isinstance(goal, dict) else None
                        if isinstance(metadata, dict):
                            api._record.delivered.append(str(metadata.get("n")))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: new connections are refused until :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # keep-alive connections too: nothing gets through
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    body = json.dumps({"status": "error", "error": {"code": status, "message": message}})
    return status, headers or {}, body.encode()


def refuse_key_for(seconds: float) -> Behaviour:
    """401 for the first half of *seconds* from the first request, 403 for the second half."""
    began: list[float] = []

    def behaviour(seen: Seen) -> Answer | None:
        if not began:
            began.append(seen.at)
        elapsed = seen.at - began[0]
        if elapsed < seconds / 2:
            return error(401, "Invalid API key")
        if elapsed < seconds:
            return error(403, "Tracking is suspended for this website")
        return None

    return behaviour


def make_tracker(api: HostileAPI, key: str = DATAFAST_KEY, **options: object) -> GoalTracker:
    """A tracker delivering to *api*, without the exit-time flush (each test closes its own)."""
    options.setdefault("flush_at_exit", False)
    return GoalTracker(key, api_url=api.url, **options)  # type: ignore[arg-type]
