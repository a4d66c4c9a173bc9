"""What every transport shares: the interface, delivery statistics, the settling of goals
(counters, log summaries, hooks), and the process-wide delivery setup.

A transport takes validated items (``submit``: goals and payments, :data:`~goaltrack.items.Tracked`)
and gets them to the API somehow: a background worker, inline, or not at all. Whatever it does,
each item it accepted ends in exactly one of delivered / failed / dropped, reported through
:class:`Settlement` so that counters (totals, and per kind: :attr:`Stats.goals`,
:attr:`Stats.payments`), logs and the ``on_delivery`` / ``on_failure`` / ``on_drop`` hooks behave
the same for every transport and every kind.

It also owns what every transport says in the log about counts: drops and final failures are
summarized periodically (the first at once, then at most one line per
``SUMMARY_INTERVAL`` seconds with the count since the last), never a line per goal.

:class:`DeliverySetup` is what a delivery that starts outside any tracker (a Celery worker's
task) takes from the process-wide tracker: :mod:`goaltrack.tracker` registers where it comes
from (:func:`use_process_delivery_setup`), so that the transports need not import the tracker.

What a process does to a transport (fork, interpreter exit, SIGTERM, thread start, the exit
report) is :mod:`goaltrack.process`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from goaltrack.delivery import DeliveryResult, Endpoint
from goaltrack.http_client import HttpPoster
from goaltrack.items import Tracked
from goaltrack.redaction import redact
from goaltrack.retry import RetryPolicy

__all__ = [
    "SUMMARY_INTERVAL",
    "Counts",
    "DeliveryHook",
    "DeliverySetup",
    "DropHook",
    "FailureHook",
    "Settlement",
    "Stats",
    "Transport",
    "describe",
    "process_delivery_setup",
    "use_process_delivery_setup",
]

logger = logging.getLogger("goaltrack")

DeliveryHook = Callable[[Tracked, DeliveryResult], object]
FailureHook = Callable[[Tracked, DeliveryResult], object]
DropHook = Callable[[Tracked, str], object]

#: The kinds of item a transport carries (``item.kind``), each counted on its own.
KINDS = ("goal", "payment")

SUMMARY_INTERVAL = 5.0
"""Seconds between two summary lines of drops (or of final failures)."""


class _Tally:
    """A count reported periodically: at once the first time, then at most once per interval
    with the count since the last report, from a timer so that the last ones are reported too."""

    def __init__(self, report: Callable[[int, str], None], interval: float) -> None:
        self._report = report
        self._interval = interval
        self._lock = threading.Lock()
        self._unreported = 0
        self._latest = ""
        self._last_report = -float("inf")
        self._timer: threading.Timer | None = None

    def add(self, latest: str) -> bool:
        """Count one; True when the caller reports it in full now (nothing was said lately)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_report >= self._interval and self._timer is None:
                self._last_report = now
                return True
            self._unreported += 1
            self._latest = latest
            if self._timer is None:
                delay = max(0.0, self._last_report + self._interval - now)
                timer = threading.Timer(delay, self.flush)
                timer.daemon = True
                timer.name = "goaltrack-summary"
                self._timer = timer
            else:
                timer = None
        if timer is not None:
            try:
                timer.start()
            except RuntimeError:  # interpreter shutting down: the exit report has the counts
                with self._lock:
                    self._timer = None
        return False

    def flush(self) -> None:
        """Report what was counted since the last report (the timer's job; also at exit)."""
        with self._lock:
            count, latest = self._unreported, self._latest
            self._unreported = 0
            self._timer = None
            if count:
                self._last_report = time.monotonic()
        if count:
            self._report(count, latest)


@dataclass(frozen=True)
class Counts:
    """Counters of one kind of item (goals, or payments) since the tracker started."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    possible_duplicates: int = 0
    """Always 0 for payments: the API records a transaction id once."""
    duplicates: int = 0
    """Payments the API answered it had already (a resend after a timeout): delivered."""
    filtered: int = 0
    invalid: int = 0


_COUNTERS = tuple(Counts.__dataclass_fields__)


@dataclass(frozen=True)
class Stats:
    """Counters since the tracker started (or since this process forked).

    Each counter is the total over goals and payments; :attr:`goals` and :attr:`payments` count
    each kind on its own.
    """

    queued: int = 0
    """Goals accepted for delivery."""
    delivered: int = 0
    failed: int = 0
    """Goals that finally failed: refused by the API, or given up after the last retry."""
    retried: int = 0
    """Retry attempts made (one goal retried three times counts three)."""
    dropped: int = 0
    """Goals never sent: the queue was full, or the tracker closed before they went out."""
    possible_duplicates: int = 0
    """Goals delivered after an attempt that may already have reached the API (a timeout);
    never payments, which the API records once."""
    duplicates: int = 0
    """Payments the API answered it had already: delivered (a resend after a timeout)."""
    filtered: int = 0
    """Goals ``before_send`` dropped (returned None for): never queued, never sent."""
    invalid: int = 0
    """Goals the provider would refuse, not sent (when the tracker is not strict)."""
    pending: int = 0
    """Goals and payments accepted and not yet delivered, failed or dropped (the queue's depth)."""
    goals: Counts = Counts()
    """The goals' counters."""
    payments: Counts = Counts()
    """The payments' counters."""


class Transport(Protocol):
    """How goals leave the process. Small on purpose: see ``goaltrack/transports/``."""

    def submit(self, goal: Tracked) -> bool:
        """Take a validated goal (or payment); True when it is accepted for delivery, False when
        it will not be sent (dropped, or disabled). A transport that delivers inline returns
        whether it was delivered."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every goal submitted before the call is delivered or finally failed."""

    def close(self, timeout: float | None = None) -> bool:
        """Flush within *timeout*, then stop; goals still waiting are dropped (and reported)."""

    @property
    def stats(self) -> Stats: ...


@dataclass(frozen=True)
class DeliverySetup:
    """What a delivery that starts outside any tracker needs (a Celery worker's task): the
    account, the rules and the counters of the process-wide tracker."""

    endpoint: Endpoint | None
    """None when no API key is configured."""
    retry: RetryPolicy
    http: Callable[[], HttpPoster] | None
    """Makes the tracker's HTTP client (None without an endpoint)."""
    settlement: Settlement


_process_delivery_setup: Callable[[], DeliverySetup] | None = None


def use_process_delivery_setup(source: Callable[[], DeliverySetup]) -> None:
    """Called once by :mod:`goaltrack.tracker`: where the process-wide tracker's setup comes from
    (so that the transports need not import the tracker)."""
    global _process_delivery_setup
    _process_delivery_setup = source


def process_delivery_setup() -> DeliverySetup:
    """The process-wide tracker's :class:`DeliverySetup` (configured on first use).

    Importing any goaltrack module imports the package, whose ``goaltrack.tracker`` registers
    the source: it is always set by the time a transport runs.
    """
    if _process_delivery_setup is None:  # pragma: no cover - see above
        raise RuntimeError("goaltrack.tracker was not imported")
    return _process_delivery_setup()


class Settlement:
    """Counts outcomes, logs final failures once, and calls the user's hooks safely."""

    def __init__(
        self,
        *,
        on_delivery: DeliveryHook | None = None,
        on_failure: FailureHook | None = None,
        on_drop: DropHook | None = None,
        debug: bool = False,
    ) -> None:
        self.on_delivery = on_delivery
        self.on_failure = on_failure
        self.on_drop = on_drop
        self.debug = debug
        """Log each goal's retries and outcome with its visitor, metadata and status."""
        self.log_failures = True
        """False where the caller reports each final failure itself (``goaltrack send``)."""
        self._lock = threading.Lock()
        self._counts = {kind: dict.fromkeys(_COUNTERS, 0) for kind in KINDS}
        self._drops = _Tally(self._report_drops, SUMMARY_INTERVAL)
        self._failures = _Tally(self._report_failures, SUMMARY_INTERVAL)

    def fresh(self) -> Settlement:
        """Zeroed counters and a new lock, same hooks (for a forked child)."""
        fresh = Settlement(
            on_delivery=self.on_delivery,
            on_failure=self.on_failure,
            on_drop=self.on_drop,
            debug=self.debug,
        )
        fresh.log_failures = self.log_failures
        return fresh

    def snapshot(self, *, pending: int = 0, queued: int | Mapping[str, int] = 0) -> Stats:
        """The counters; *queued* adds what a transport counted under its own lock (a number
        of goals, or a count per kind)."""
        with self._lock:
            by_kind = {kind: dict(counts) for kind, counts in self._counts.items()}
        added = {"goal": queued} if isinstance(queued, int) else queued
        for kind, amount in added.items():
            by_kind[kind]["queued"] += amount
        totals = {name: sum(counts[name] for counts in by_kind.values()) for name in _COUNTERS}
        return Stats(
            **totals,
            pending=pending,
            goals=Counts(**by_kind["goal"]),
            payments=Counts(**by_kind["payment"]),
        )

    def count(self, name: str, amount: int = 1, *, kind: str = "goal") -> None:
        with self._lock:
            self._counts[kind][name] += amount

    def retrying(self, goal: Tracked, result: DeliveryResult, delay: float) -> None:
        """A transient failure of *goal*: it is tried again in *delay* seconds."""
        self.count("retried", kind=goal.kind)
        if self.debug:
            logger.debug(
                "goaltrack debug: retrying %s in %.2f s: %s", describe(goal), delay, result.reason
            )

    def delivered(self, goal: Tracked, result: DeliveryResult, *, maybe_duplicate: bool) -> None:
        """*goal* was delivered; *maybe_duplicate*: an earlier attempt may have arrived too
        (counted for goals only: the API records a payment's transaction id once)."""
        with self._lock:
            counts = self._counts[goal.kind]
            counts["delivered"] += 1
            if result.duplicate:
                counts["duplicates"] += 1
            elif maybe_duplicate and not goal.idempotent:
                counts["possible_duplicates"] += 1
        if self.debug:
            logger.debug(
                "goaltrack debug: delivered %s: HTTP %s%s%s",
                describe(goal),
                result.status,
                f", event id {result.event_id}" if result.event_id else "",
                " (the API had it already)" if result.duplicate else "",
            )
        else:
            logger.debug("%s delivered (%s)", goal.label, result.event_id or result.status)
        self._call(self.on_delivery, goal, result)

    def failed(self, goal: Tracked, result: DeliveryResult) -> None:
        """A goal that finally failed: logged in full if nothing failed lately, else summarized
        (``debug`` logs each one)."""
        self.count("failed", kind=goal.kind)
        if self.log_failures:
            reason = redact(result.reason)
            if self.debug or self._failures.add(f"{goal.label}: {reason}"):
                logger.error(
                    "%s for visitor %r was not recorded by %s: %s%s",
                    goal.label,
                    goal.visitor_id,
                    goal.provider.name,
                    reason,
                    f" ({describe(goal)})" if self.debug else "",
                )
        self._call(self.on_failure, goal, result)

    def dropped(self, goal: Tracked, reason: str, *, log: bool = True) -> None:
        """A goal that will never be sent; summarized in the log, the count is exact.

        *log* False: the caller reports it itself (the exit report).
        """
        self.count("dropped", kind=goal.kind)
        if log and self._drops.add(f"{goal.label}: {reason}"):
            self._report_drops(1, f"{goal.label}: {reason}")
        if self.debug:
            logger.debug("goaltrack debug: dropped %s: %s", describe(goal), reason)
        self._call(self.on_drop, goal, reason)

    def flush_summaries(self) -> None:
        """Log the drops and failures not reported yet (at exit, before the exit report)."""
        self._drops.flush()
        self._failures.flush()

    @staticmethod
    def _report_drops(count: int, latest: str) -> None:
        logger.warning(
            "goaltrack: dropped %d goal(s) (latest %s); see tracker.stats and the on_drop hook",
            count,
            redact(latest),
        )

    @staticmethod
    def _report_failures(count: int, latest: str) -> None:
        logger.error(
            "goaltrack: %d more goal(s) were not recorded (latest %s); see tracker.stats and the "
            "on_failure hook",
            count,
            redact(latest),
        )

    def _call(self, hook: Callable[..., object] | None, *args: object) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:
            # A user's hook must never kill the worker or lose the next goal.
            logger.exception("goaltrack hook %r raised", getattr(hook, "__name__", hook))


def describe(goal: Tracked) -> str:
    """A goal or payment for the debug log (never the key, nor a customer's email or name)."""
    return goal.describe()
