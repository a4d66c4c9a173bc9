"""Command line for the fake provider API: ``python -m goaltrack.testing --port 8765``.

This module owns only argument parsing and the foreground run: it prints a line with the URL
and a few with how to get a visitor id and see the goals by hand (``quick_help``), then serves
until SIGINT or SIGTERM and exits 0. The project CLI reuses ``add_arguments`` and
``run`` for ``goaltrack fake-api``. The server itself is
:class:`goaltrack.testing.FakeAPIServer`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

__all__ = ["PROVIDER_CHOICES", "add_arguments", "main", "run"]

# Mirrors goaltrack.testing.fake_api.PROVIDERS (checked by a test), so that parsing arguments
# needs neither Starlette nor uvicorn.
PROVIDER_CHOICES = ("datafast", "faurya", "flowsery")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake API's options to ``parser``."""
    parser.add_argument(
        "--port", type=int, default=8765, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument(
        "--provider",
        choices=PROVIDER_CHOICES,
        default="datafast",
        help="provider answering the bare /api/v1/goals path (default: datafast)",
    )
    parser.add_argument(
        "--pageview-free",
        action="store_true",
        help="accept DataFast and Faurya goals from visitors without a pageview (manual trials)",
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow a --host that is not loopback (the fake accepts any well-formed key)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve with parsed ``args`` until SIGINT or SIGTERM; return the exit status."""
    try:
        from goaltrack.testing.fake_api.app import quick_help
        from goaltrack.testing.server import FakeAPIServer
    except ImportError as exc:
        hint = "pip install 'goaltrack[fakeapi]'"
        print(f"error: the fake API needs the fakeapi extra ({hint}): {exc}", file=sys.stderr)
        return 2
    try:
        server = FakeAPIServer(
            args.host,
            args.port,
            allow_non_loopback=args.allow_non_loopback,
            default_provider=args.provider,
            require_pageview=not args.pageview_free,
        )
    except ValueError as exc:
        print(f"error: {exc}; see --allow-non-loopback", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(
            f"goaltrack fake API listening on {server.url}"
            f" (bare path: {args.provider}; inspect: {server.url}/_fake/)",
            *quick_help(server.url, server.state),
            "Stop with Ctrl+C.",
            sep="\n",
            flush=True,
        )
        server.join()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m goaltrack.testing") -> int:
    """Entry point of ``python -m goaltrack.testing``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run goaltrack's fake DataFast / Faurya / Flowsery API in the foreground.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
