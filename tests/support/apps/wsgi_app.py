"""A WSGI app for gunicorn and uWSGI: ``GET /track?id=N`` tracks one ``purchase`` goal.

The process-wide tracker is configured when the module is imported (``goaltrack.configure()``
from the ``GOALTRACK_*`` variables), as an app's settings would: under ``gunicorn --preload``
and uWSGI (which loads the app before forking its workers) that is in the master process,
before gevent's monkey-patching of a gevent worker. With ``SERVERS_DELIVER_WHILE_LOADING=1``
one ``warmup`` goal is also delivered then, as an app that tracks while it loads would.
``GET /`` answers 200 without tracking; ``GET /warnings`` lists what goaltrack logged at WARNING
or above in this process (and in the master before it forked this worker).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import goaltrack

VISITOR = os.environ.get("SERVERS_VISITOR", "")


class _Remember(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


logging.basicConfig()
warnings = _Remember()
logging.getLogger("goaltrack").addHandler(warnings)
goaltrack.configure()
if os.environ.get("SERVERS_DELIVER_WHILE_LOADING") == "1":
    goaltrack.track("warmup", visitor_id=VISITOR)
    goaltrack.flush(5)


def application(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO")
    body = b"ok"
    if path == "/track":
        goal_id = parse_qs(environ.get("QUERY_STRING", "")).get("id", ["none"])[0]
        goaltrack.track("purchase", visitor_id=VISITOR, metadata={"id": goal_id})
    elif path == "/warnings":
        body = json.dumps(warnings.messages).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
