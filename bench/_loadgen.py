"""A small HTTP load generator for bench/e2e_delivery.py, run in its own process (a helper).

``python bench/_loadgen.py URL PATH --duration S --concurrency N --visitors id,id,...``: N
connections on asyncio streams send ``GET PATH`` one after the other for S seconds (HTTP/1.1,
kept alive unless the server closes: gunicorn's sync workers do after every answer), each with
a browser User-Agent and its own visitor's ``datafast_visitor_id`` cookie. Hand-written
requests and a minimal response parser, so that the generator costs the shared machine as
little as possible. Every ``--every`` seconds it prints a progress line ``<elapsed> <ok>
<errors>``, then one JSON line ``{"ok", "errors", "elapsed"}``; an answer is ok if its status is
200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


class Counts:
    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of one response, and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if length:
        await reader.readexactly(length)
    return status, keep_alive


async def _connection(
    host: str, port: int, request: bytes, deadline: float, counts: Counts
) -> None:
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts.errors += 1
            keep_alive = False
        else:
            if status == 200:
                counts.ok += 1
            else:
                counts.errors += 1
        if not keep_alive and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def drive(
    url: str, path: str, duration: float, visitors: list[str], every: float
) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    counts = Counts()
    started = time.monotonic()
    deadline = started + duration

    def request(visitor: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {BROWSER_UA}\r\n"
            f"Accept: text/html\r\nCookie: datafast_visitor_id={visitor}\r\n\r\n"
        ).encode()

    tasks = [
        asyncio.create_task(_connection(host, port, request(v), deadline, counts)) for v in visitors
    ]
    while not all(task.done() for task in tasks):
        await asyncio.wait(tasks, timeout=every)
        print(f"{time.monotonic() - started:.3f} {counts.ok} {counts.errors}", flush=True)
    await asyncio.gather(*tasks)
    return {"ok": counts.ok, "errors": counts.errors, "elapsed": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--visitors", required=True, help="one visitor id per connection")
    parser.add_argument("--every", type=float, default=0.25)
    args = parser.parse_args()
    result = asyncio.run(
        drive(args.url, args.path, args.duration, args.visitors.split(","), args.every)
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
