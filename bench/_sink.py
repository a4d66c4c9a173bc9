"""A stand-in ingestion API for bench/e2e_delivery.py (a helper): segment's and posthog's, and
goaltrack's with ``--receiver sink``.

``python bench/_sink.py`` serves 127.0.0.1 on a free port, prints ``listening on <url>``, and
answers 200 with ``{}`` to any POST after an injected latency, counting the events it carried:
the length of the JSON body's ``batch`` list (segment's ``/v1/batch``, posthog's ``/batch/``,
gzipped or not), or 1 for any other JSON body. Control, without latency:
``GET /_sink/counts`` (``{"events": n, "requests": n, "paths": {...}}``), ``POST /_sink/reset``
(counts to zero) and ``POST /_sink/latency`` with ``{"ms": 20}``.

A bare ASGI app under uvicorn (its C parser, one event loop): a remote API's own work does not
run on the web host, so the stand-in should cost the machine as little as it can per request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class SinkState:
    def __init__(self) -> None:
        self.latency_s = 0.0
        self.events = 0
        self.requests = 0
        self.paths: Counter[str] = Counter()

    def record(self, path: str, body: bytes, encoding: str) -> None:
        if encoding == "gzip":
            body = gzip.decompress(body)
        payload: Any = json.loads(body) if body else None
        events = len(payload["batch"]) if isinstance(payload, dict) and "batch" in payload else 1
        self.events += events  # one event loop: no lock
        self.requests += 1
        self.paths[path] += events


STATE = SinkState()
_EMPTY = b"{}"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    answer = _EMPTY
    if scope["method"] == "GET" and path == "/_sink/counts":
        counts = {"events": STATE.events, "requests": STATE.requests, "paths": dict(STATE.paths)}
        answer = json.dumps(counts).encode()
    elif path == "/_sink/reset":
        STATE.events = STATE.requests = 0
        STATE.paths.clear()
    elif path == "/_sink/latency":
        STATE.latency_s = float(json.loads(body)["ms"]) / 1000
    elif scope["method"] == "POST":
        if STATE.latency_s:
            await asyncio.sleep(STATE.latency_s)  # the injected latency, per request
        headers = dict(scope["headers"])
        STATE.record(path, body, headers.get(b"content-encoding", b"").decode())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


def main() -> None:
    sock = socket.socket()
    # Accepted connections inherit it: each answer's head and body leave at once (uvicorn
    # writes them separately; with Nagle's algorithm the body would wait for a delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)  # connections wait in the backlog until the server runs
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="asyncio",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=1024,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
