"""A stand-in for segment's and posthog's ingestion APIs in bench/e2e_delivery.py (a helper).

``python bench/_sink.py`` serves 127.0.0.1 on a free port, prints ``listening on <url>``, and
answers 200 with ``{}`` to any POST after an injected latency, counting the events it carried:
the length of the JSON body's ``batch`` list (segment's ``/v1/batch``, posthog's ``/batch/``,
gzipped or not), or 1 for any other JSON body. Control, without latency:
``GET /_sink/counts`` (``{"events": n, "requests": n, "paths": {...}}``), ``POST /_sink/reset``
(counts to zero) and ``POST /_sink/latency`` with ``{"ms": 20}``.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SinkState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency_s = 0.0
        self.events = 0
        self.requests = 0
        self.paths: Counter[str] = Counter()

    def record(self, path: str, body: bytes, encoding: str) -> None:
        if encoding == "gzip":
            body = gzip.decompress(body)
        payload: Any = json.loads(body) if body else None
        events = len(payload["batch"]) if isinstance(payload, dict) and "batch" in payload else 1
        with self.lock:
            self.events += events
            self.requests += 1
            self.paths[path] += events


class SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' sessions expect
    state: SinkState

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.state
        if self.path == "/_sink/counts":
            with state.lock:
                counts = {"events": state.events, "requests": state.requests}
                self._answer({**counts, "paths": dict(state.paths)})
        else:
            self._answer({})

    def do_POST(self) -> None:
        state = self.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_sink/reset":
            with state.lock:
                state.events = state.requests = 0
                state.paths.clear()
        elif self.path == "/_sink/latency":
            state.latency_s = float(json.loads(body)["ms"]) / 1000
        else:
            if state.latency_s:
                time.sleep(state.latency_s)  # the injected latency, per request
            state.record(self.path.split("?")[0], body, self.headers.get("Content-Encoding", ""))
        self._answer({})


def main() -> None:
    SinkHandler.state = SinkState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), SinkHandler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
