"""Serverless platforms: which one runs this process, and what goaltrack does there.

AWS Lambda freezes the execution environment as soon as a handler returns: background threads
stop, and a frozen environment may be discarded without a signal. Vercel's Python functions run
the same way; Cloud Run with request-based billing throttles an instance's CPU once its response
is sent. A goal left in memory for a background thread is then delivered late (when the next
request thaws the instance) or never.

This module owns that knowledge, and no framework's:

- :func:`detect` names the platform from the variables it sets (``AWS_LAMBDA_FUNCTION_NAME``,
  ``K_SERVICE``, ``VERCEL``, ``FUNCTIONS_WORKER_RUNTIME``); :func:`platform_for` applies the
  ``serverless`` option (None: detect; True: a serverless platform even where none is detected;
  False: never, as on Cloud Run with instance-based billing, whose CPU stays on).
- On such a platform the tracker delivers from its own threads (``delivery_process`` None means
  no courier: a second process would be frozen too, and would cost every cold start), the
  adapters make a request that tracked goals wait for their delivery before the response is
  handed back (``flush_at_request_end`` seconds, :data:`~goaltrack.options.DEFAULT_FLUSH_TIMEOUT`
  when not set), and :func:`announce` says so in one INFO line, and warns about an outbox on the
  instance's own disk, which does not outlive the instance.
- :func:`flush_deadline`: no wait runs past the time a Lambda invocation has left, less
  :data:`MARGIN_S`; :func:`lambda_context_in` finds the invocation's context where the Lambda
  adapters put it (Mangum's ASGI scope, apig-wsgi's and serverless-wsgi's WSGI environ).
- :func:`lambda_handler`: the decorator for plain Lambda handlers (SQS, schedules, webhooks).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from goaltrack.options import DEFAULT_FLUSH_TIMEOUT

if TYPE_CHECKING:
    from goaltrack.tracker import GoalTracker

__all__ = [
    "MARGIN_S",
    "PLATFORMS",
    "LambdaContext",
    "Platform",
    "announce",
    "detect",
    "flush_before_freeze",
    "flush_deadline",
    "lambda_context_in",
    "lambda_handler",
    "platform_for",
]

logger = logging.getLogger("goaltrack")

#: Seconds a flush leaves of a Lambda invocation's remaining time, for the runtime to send the
#: response: a handler still running at its deadline is killed, its result lost.
MARGIN_S = 0.5


@dataclass(frozen=True)
class Platform:
    """A platform that stops a process's CPU between requests."""

    name: str
    variable: str
    """The environment variable whose presence says the platform runs this process (empty:
    named by the ``serverless`` option)."""
    after_response: str
    """What it does to the process once a response is handed back."""
    sigterm_grace: float | None = None
    """Seconds between SIGTERM and SIGKILL when it stops an instance, where documented."""


#: The platforms goaltrack recognizes, the first one whose variable is set winning (Vercel's
#: functions run on Lambda and may carry its variables too).
PLATFORMS: tuple[Platform, ...] = (
    Platform("Vercel", "VERCEL", "freezes the function once it has answered"),
    Platform(
        "AWS Lambda",
        "AWS_LAMBDA_FUNCTION_NAME",
        "freezes the execution environment once the handler returns",
    ),
    Platform(
        "Google Cloud Run",
        "K_SERVICE",
        "throttles the CPU once the response is sent (request-based billing)",
        sigterm_grace=10.0,
    ),
    Platform(
        "Azure Functions",
        "FUNCTIONS_WORKER_RUNTIME",
        "may freeze the host once a function has answered (consumption plans)",
    ),
)

#: What ``serverless=True`` means where no platform is detected.
GIVEN = Platform("a serverless platform", "", "may freeze the process once it has answered")


def detect(environ: Mapping[str, str] | None = None) -> Platform | None:
    """The platform running this process, from its environment variables; None: none known."""
    environ = os.environ if environ is None else environ
    for platform in PLATFORMS:
        if environ.get(platform.variable):
            return platform
    return None


def platform_for(option: bool | None, environ: Mapping[str, str] | None = None) -> Platform | None:
    """The platform a tracker with ``serverless=option`` works for; None: a server's rules."""
    if option is False:
        return None
    detected = detect(environ)
    if detected is None and option:
        return GIVEN
    return detected


# -- the deadline --------------------------------------------------------------------------------


class LambdaContext(Protocol):
    """What goaltrack reads of the context object Lambda passes a handler."""

    def get_remaining_time_in_millis(self) -> int: ...


#: Where the Lambda adapters put the invocation's context: Mangum (ASGI scope), apig-wsgi and
#: serverless-wsgi (WSGI environ; Django's ``request.META`` is that environ).
_CONTEXT_KEYS = ("aws.context", "apig_wsgi.context", "serverless.context")


def lambda_context_in(carrier: Mapping[str, Any] | None) -> LambdaContext | None:
    """The Lambda context in an ASGI scope or a WSGI environ, or None."""
    if carrier is None:
        return None
    for key in _CONTEXT_KEYS:
        context = carrier.get(key)
        if context is not None and hasattr(context, "get_remaining_time_in_millis"):
            return context  # type: ignore[no-any-return]
    return None


def flush_deadline(limit: float, context: LambdaContext | None) -> float:
    """Seconds a flush before the freeze may take: *limit*, and, in a Lambda invocation, no
    more than its remaining time less :data:`MARGIN_S` (0 when that is gone)."""
    if context is None:
        return limit
    try:
        remaining = context.get_remaining_time_in_millis() / 1000.0
    except Exception:  # a context of another shape: the limit alone
        logger.debug("goaltrack: the Lambda context gave no remaining time", exc_info=True)
        return limit
    return max(0.0, min(limit, remaining - MARGIN_S))


def flush_before_freeze(tracker: GoalTracker, timeout: float, what: str) -> bool:
    """Flush *tracker* for at most *timeout* seconds; never raises. A WARNING when goals are
    still pending then: they wait in memory for the next request to thaw the instance."""
    try:
        flushed = tracker.flush(timeout)
    except Exception:
        logger.exception("goaltrack: flushing goals at the end of %s failed", what)
        return False
    if not flushed:
        logger.warning(
            "goaltrack: %d goal(s) still pending after %g s at the end of %s; they stay in "
            "memory until the next request thaws this instance",
            tracker.stats.pending,
            timeout,
            what,
        )
    return flushed


# -- plain Lambda handlers -----------------------------------------------------------------------

R = TypeVar("R")
Handler = Callable[[Any, Any], R]


@overload
def lambda_handler(handler: Handler[R], /) -> Handler[R]: ...


@overload
def lambda_handler(
    *, tracker: GoalTracker | None = None, timeout: float = DEFAULT_FLUSH_TIMEOUT
) -> Callable[[Handler[R]], Handler[R]]: ...


def lambda_handler(
    handler: Handler[R] | None = None,
    /,
    *,
    tracker: GoalTracker | None = None,
    timeout: float = DEFAULT_FLUSH_TIMEOUT,
) -> Handler[R] | Callable[[Handler[R]], Handler[R]]:
    """Deliver the goals an AWS Lambda handler tracked before it returns to the runtime.

    ``@lambda_handler`` or ``@lambda_handler(tracker=..., timeout=...)`` on a handler
    ``(event, context)`` (an SQS consumer, a scheduled job, a webhook): when it returns or
    raises, the goals still pending are waited for, at most *timeout* seconds and never past
    the invocation's remaining time less :data:`MARGIN_S`. *tracker*: the process-wide one
    (``goaltrack.track()``'s) when not given. Whatever the platform detection says: the
    decorator is the request.
    """
    if timeout < 0:
        raise ValueError(f"lambda_handler: timeout must not be negative, not {timeout!r}")

    def decorate(func: Handler[R]) -> Handler[R]:
        @functools.wraps(func)
        def handle(event: Any, context: Any) -> R:
            try:
                return func(event, context)
            finally:
                _flush_invocation(tracker, timeout, context)

        return handle

    return decorate if handler is None else decorate(handler)


def _flush_invocation(tracker: GoalTracker | None, timeout: float, context: object) -> None:
    if tracker is None:
        from goaltrack.tracker import get_tracker

        tracker = get_tracker()
    if tracker.stats.pending == 0:
        return
    given = context if hasattr(context, "get_remaining_time_in_millis") else None
    limit = flush_deadline(timeout, given)
    flush_before_freeze(tracker, limit, "a Lambda invocation")


# -- what the tracker says at start --------------------------------------------------------------

_announced: set[str] = set()


def announce(platform: Platform, *, mode: str, outbox: str | None, shutdown_timeout: float) -> None:
    """The tracker's words on *platform*: one INFO line per process and platform saying how
    goals are delivered there, a WARNING for an outbox on the instance's disk (each time), and
    one for a ``shutdown_timeout`` longer than the platform leaves after SIGTERM."""
    if outbox is not None:
        logger.warning(
            "goaltrack: the outbox %s is on the disk of a %s instance, which does not outlive "
            "the instance: goals still in it are lost when the platform discards the instance. "
            "For delivery that survives it, send goals through a queue (mode='celery', "
            "goaltrack.transports.celery)",
            outbox,
            platform.name,
        )
    grace = platform.sigterm_grace
    if grace is not None and shutdown_timeout >= grace:
        logger.warning(
            "goaltrack: shutdown_timeout is %g s, but %s stops an instance %g s after SIGTERM: "
            "the flush at exit is cut short; set it below %g s",
            shutdown_timeout,
            platform.name,
            grace,
            grace,
        )
    if platform.name in _announced or mode == "disabled":
        return
    _announced.add(platform.name)
    if mode == "background":
        how = (
            "a request (or a @goaltrack.serverless.lambda_handler invocation) that tracked goals "
            "waits for their delivery before its response is handed back (flush_at_request_end, "
            f"{DEFAULT_FLUSH_TIMEOUT:g} s by default, within a Lambda invocation's time left), "
            "from this process's threads"
        )
    else:
        how = f"goals are handed over as they are tracked (mode={mode!r})"
    logger.info(
        "goaltrack: on %s (%s), which %s: %s; serverless=False turns this off",
        platform.name,
        f"{platform.variable} is set" if platform.variable else "serverless=True",
        platform.after_response,
        how,
    )
