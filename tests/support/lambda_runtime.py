"""An emulated Lambda runtime that freezes its process the moment a handler returns.

The runtime (``python -m tests.support.lambda_runtime package.module:handler``, a child process)
reads one invocation a line on stdin (``{"event": ..., "deadline_ms": 3000}``), calls the
handler with the event and a context whose ``get_remaining_time_in_millis()`` counts down from
``deadline_ms``, writes ``returned <result as JSON>`` (or ``raised <error>``) on stdout, and stops
itself at once with SIGSTOP, as Lambda freezes the execution environment once the handler's
result is posted: no thread of the process runs again until :meth:`FrozenRuntime.invoke` thaws
it for the next invocation, or ever, when :meth:`FrozenRuntime.discard` kills it frozen.

:meth:`FrozenRuntime.invoke` reads the line and calls its ``at_return`` callable right then
(what the fake API holds when the handler returned), then waits until the process is stopped.
:func:`http_event` builds an API Gateway HTTP API (payload 2.0) event, what Mangum and
apig-wsgi take. Not a test module.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from tests.support.paths import REPO
from tests.support.waiting import wait_until

T = TypeVar("T")

RETURNED = "returned "
RAISED = "raised "
START_TIMEOUT_S = 30.0
"""How long the first invocation may take: importing a framework in a loaded machine."""


class Context:
    """The parts of Lambda's context object handlers and adapters read."""

    function_name = "goaltrack-tests"
    function_version = "$LATEST"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:eu-west-1:000000000000:function:goaltrack-tests"
    log_group_name = "/aws/lambda/goaltrack-tests"
    log_stream_name = "tests"

    def __init__(self, deadline_ms: int) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + deadline_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def http_event(
    path: str, *, query: str = "", cookies: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A GET through an API Gateway HTTP API (payload format 2.0), with *cookies*."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "cookies": [f"{name}={value}" for name, value in (cookies or {}).items()],
        "headers": {
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 1767225600000,
        },
        "isBase64Encoded": False,
    }


def process_state(pid: int) -> str:
    """The process's state letter (``T``: stopped), from ``/proc``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


class FrozenRuntime(Generic[T]):
    """The runtime child process for *handler* (``package.module:attribute``), frozen between
    invocations. ``at_return()`` is called the moment each invocation's result is read."""

    def __init__(
        self, handler: str, env: Mapping[str, str], log: Path, at_return: Callable[[], T]
    ) -> None:
        self._at_return = at_return
        self._log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.lambda_runtime", handler],
                cwd=REPO,
                env={**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
            )
        self.invocations = 0

    @property
    def output(self) -> str:
        """What the runtime logged (stderr): goaltrack's lines among them."""
        return self._log.read_text(errors="replace")

    def invoke(self, event: Mapping[str, Any], deadline_ms: int = 3000) -> tuple[Any, T]:
        """Thaw the process if frozen, run one invocation; (the handler's result, what
        ``at_return()`` gave when the result was read). The process is frozen again on return."""
        process = self.process
        assert process.stdin is not None
        assert process.stdout is not None
        if self.invocations:
            os.kill(process.pid, signal.SIGCONT)
        self.invocations += 1
        process.stdin.write(json.dumps({"event": event, "deadline_ms": deadline_ms}) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        seen = self._at_return()
        if not line.startswith(RETURNED):
            raise AssertionError(f"the handler did not return: {line!r}\n{self.output}")
        wait_until(
            lambda: process_state(process.pid) == "T",
            what="the runtime stopped itself after the handler returned",
        )
        return json.loads(line[len(RETURNED) :]), seen

    def discard(self) -> None:
        """Kill the frozen process without resuming it: an environment discarded while frozen."""
        self.process.kill()
        self.process.wait(10)

    def __enter__(self) -> FrozenRuntime[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.discard()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _run(handler_path: str) -> None:
    """The child: invocations from stdin, one at a time, frozen after each."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    module_name, _, attribute = handler_path.partition(":")
    handler = getattr(importlib.import_module(module_name), attribute)
    for line in sys.stdin:
        invocation = json.loads(line)
        context = Context(invocation["deadline_ms"])
        try:
            result = handler(invocation["event"], context)
        except Exception as exc:
            logging.getLogger("lambda_runtime").exception("the handler raised")
            answer = RAISED + repr(exc)
        else:
            answer = RETURNED + json.dumps(result)
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen: no thread of this process runs now


if __name__ == "__main__":
    _run(sys.argv[1])
