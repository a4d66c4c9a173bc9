"""A stand-in for the provider behind a script proxy: serves ``/js/script.js``, records what
reaches ``/api/events`` (headers and body), and can fail or stall on demand. Not a test module.

Its base URL works as a ``GOALTRACK_API_URL`` (plain HTTP on loopback): a proxy then fetches the
script and forwards the events here, as it would to the bundled fake API.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from goaltrack.script_proxy import Upstream
from tests.support.threaded import serve_asgi

SCRIPT = b"/* upstream script */"


class Recorder:
    """Counts script fetches, keeps the events' headers and bodies; ``failing`` answers 503,
    ``delay`` stalls each event that many seconds."""

    def __init__(self) -> None:
        self.script_hits = 0
        self.events_arrived = 0  # counted as each event arrives, before any delay
        self.events: list[tuple[dict[str, str], bytes]] = []
        self.failing = False
        self.delay = 0.0
        self.url = ""
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.script_hits = self.events_arrived = 0
            self.events.clear()
            self.failing, self.delay = False, 0.0

    @property
    def upstream(self) -> Upstream:
        return Upstream(self.url + "/js/script.js", self.url + "/api/events")

    def app(self) -> Starlette:
        async def script(request: Request) -> Response:
            with self.lock:
                self.script_hits += 1
            if self.failing:
                return PlainTextResponse("down", 503)
            return Response(SCRIPT, media_type="text/javascript")

        async def events(request: Request) -> Response:
            with self.lock:
                self.events_arrived += 1
            if self.delay:
                await asyncio.sleep(self.delay)  # a slow provider, as the test asked
            body = await request.body()
            with self.lock:
                self.events.append((dict(request.headers), body))
            return JSONResponse({"status": "success"})

        return Starlette(
            routes=[Route("/js/script.js", script), Route("/api/events", events, methods=["POST"])]
        )


@contextlib.contextmanager
def recording_upstream() -> Iterator[Recorder]:
    """A :class:`Recorder` served on a free loopback port (``recorder.url``)."""
    recorder = Recorder()
    with serve_asgi(recorder.app()) as url:
        recorder.url = url
        yield recorder
