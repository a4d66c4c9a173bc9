"""Free loopback ports for the servers the tests start, safe under parallel pytest workers.

A port from ``bind(("127.0.0.1", 0))`` is in the kernel's ephemeral range, the range every
outgoing connection of every worker also takes its local port from: between the probe and the
server's own ``bind`` another connection may take it. Here ports come from below that range, and
each pytest-xdist worker (``PYTEST_XDIST_WORKER=gwN``) has a slice of its own, so two workers
never hand out the same port and no client socket lands on one.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

FIRST_PORT = 20000
SLICE = 1000
"""Ports per worker: 20000-20999 for the main process, 21000-21999 for gw0, and so on."""


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0


def _candidates() -> itertools.cycle[int]:
    start = FIRST_PORT + _worker_index() % 12 * SLICE
    # a random start: two sessions running at once (two engineers, two checkouts) rarely meet
    offset = random.randrange(SLICE)
    return itertools.cycle([start + (offset + i) % SLICE for i in range(SLICE)])


_next = _candidates()


def free_port() -> int:
    """A loopback port nothing listens on now, not handed out before by this process."""
    for _ in range(SLICE):
        port = next(_next)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in this worker's slice")
