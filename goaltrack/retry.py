"""The retry rules: what becomes of a goal whose delivery failed, the same for every transport.

How retries work lives here, and its scenarios in ``tests/core/test_retry_state.py``; one
attempt and how the API's answer is read (:class:`~goaltrack.delivery.DeliveryResult`) are
:mod:`goaltrack.delivery`'s, which this module reads and which knows nothing of it.

- What comes of an attempt: :func:`judge` is the one place where the background, outbox, Celery
  and ``sync`` transports settle an attempt. It tells the :class:`CircuitBreaker`, applies the
  :class:`RetryPolicy` (a goal ends for transient reasons only by ``give_up_after`` or by
  ``max_retries`` failures of its own while the API answered others) and returns a
  :class:`Verdict` with the goal's next :class:`RetryState`, the small serializable value each
  transport keeps beside its goal (memory, the outbox's ``retry`` column, Celery's ``state``
  keyword). A goal's own wait grows by :func:`backoff_delay`.
- The breakers: :func:`new_breaker` makes every one; :func:`shared_breaker` holds those a process
  shares (Celery tasks, ``sync`` calls), forgotten in a forked child. A breaker says, once, when
  the API becomes unreachable or refuses the key, and when it is back.
- Time: the rules read a :class:`Clock` (monotonic and wall; :data:`SYSTEM_CLOCK` in
  production) passed in by the transports, so that tests can drive an outage of a day in
  milliseconds.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from goaltrack.delivery import (
    _REFUSED_ADVICE,
    REFUSED_STATUSES,
    DeliveryResult,
    Endpoint,
    Outcome,
)
from goaltrack.process import PerProcess
from goaltrack.redaction import redact

__all__ = [
    "SYSTEM_CLOCK",
    "BreakerState",
    "CircuitBreaker",
    "Clock",
    "InFlightLimit",
    "RetryPolicy",
    "RetryState",
    "SharedBreaker",
    "SystemClock",
    "Ticket",
    "Verdict",
    "backoff_delay",
    "judge",
    "new_breaker",
    "shared_breaker",
]

logger = logging.getLogger("goaltrack")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff, "equal jitter": half to all of ``base * 2**(attempt-1)``, capped."""
    # The exponent is bounded: a goal probing a down API fails about once a second, and
    # 2.0 ** 1024 would raise OverflowError after a quarter of an hour.
    ceiling = min(cap, base * 2.0 ** min(max(0, attempt - 1), _MAX_EXPONENT))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


_MAX_EXPONENT = 64


# -- the clock ---------------------------------------------------------------------------------


class Clock(Protocol):
    """Where the retry, breaker and outbox logic read the time (and sleep, in ``sync`` mode).

    Production uses :data:`SYSTEM_CLOCK`; a test passes a clock it moves by hand, so that an
    outage of a day costs it no more than a second.
    """

    def monotonic(self) -> float:
        """Seconds on a clock that never steps: schedules, breaker intervals, deadlines."""
        ...

    def wall(self) -> float:
        """Wall-clock seconds since the epoch: when a goal was tracked, across processes."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait *seconds* (only the ``sync`` transport sleeps between attempts)."""
        ...


class SystemClock:
    """The real clocks: ``time.monotonic``, ``time.time`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


# -- the rules: policy, state, verdict ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a goal whose delivery failed transiently is tried again, and when it is given up.

    Two rules end a goal for transient reasons, and nothing else does:

    - **time**: it is still undelivered ``give_up_after`` seconds after it was tracked (the
      outbox uses its ``max_age``, the ``sync`` transport its ``sync_deadline``). An outage,
      however long, ends goals only this way.
    - **isolated failures**: it failed ``max_retries + 1`` times while the API was otherwise
      answering (a goal-specific 5xx). A failure counts only if the circuit breaker did not
      open before the goal's next attempt: failures that belong to an outage count nothing.
    """

    max_retries: int = 10
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    """The longest wait between two attempts of a goal, whatever ``Retry-After`` asks for."""
    give_up_after: float = 24 * 3600.0
    probe_interval_max: float = 1.0
    """The longest the circuit breaker waits between probes of a down API."""
    refused_probe_interval_max: float = 60.0
    """The longest the breaker waits between probes while the key is refused (401/403)."""
    refusal_give_up: float = 3600.0
    """Goals held by a refused key fail (with its status) once it has been refused this long."""

    def capped(self, result: DeliveryResult) -> DeliveryResult:
        """*result* with its ``Retry-After`` no longer than ``backoff_max``."""
        if result.retry_after is not None and result.retry_after > self.backoff_max:
            return dataclasses.replace(result, retry_after=self.backoff_max)
        return result

    def backoff(self, state: RetryState) -> float:
        """The goal's own wait before its next attempt, after ``state.failures`` failures."""
        return backoff_delay(state.failures, self.backoff_base, self.backoff_max)

    def final_failure(self, state: RetryState, last: DeliveryResult, age: float) -> DeliveryResult:
        """Why :func:`judge` gave a goal up: out of time, or out of isolated retries."""
        if age >= self.give_up_after:
            why = f"undelivered for {age:.1f} s (give_up_after={self.give_up_after:g} s)"
        else:
            why = (
                f"failed {state.strikes + 1} times while the API answered other goals "
                f"(max_retries={self.max_retries})"
            )
        return DeliveryResult(
            Outcome.FAILED,
            f"gave up after {state.failures} attempts, {why}; last: {last.reason}",
            status=last.status,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RetryState:
    """One goal's retry bookkeeping: what its earlier attempts came to.

    A value, made next by :func:`judge` only (the one exception: :meth:`with_lost_attempt`, for
    an attempt whose process ended before its answer could be judged). Every transport keeps it
    beside its goal as it is: in memory (background), in the outbox's ``retry`` column
    (:meth:`to_json`), in the Celery task's ``state`` keyword (:meth:`to_dict`), in the ``sync``
    transport's loop. Its field names are the keys of that JSON object.
    """

    failures: int = 0
    """Transient failures so far (the backoff's exponent)."""
    strikes: int = 0
    """Failures confirmed as isolated: the API answered on, no outage followed."""
    strike_mark: str | None = None
    """The breaker epoch of the latest failure if it looked isolated (not yet confirmed); None
    when the latest failure was the outage's: the goal is due as soon as the API is back."""
    may_have_arrived: bool = False
    """An earlier attempt may have reached the API: delivering now may duplicate it."""

    def with_lost_attempt(self) -> RetryState:
        """An attempt was made whose answer was lost with its process (an outbox lease that
        ran out): it may have arrived."""
        return dataclasses.replace(self, may_have_arrived=True)

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from a new goal's (``{}`` for a goal never tried)."""
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != field.default
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RetryState:
        """The state :meth:`to_dict` gave. Raises ValueError for anything else."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"a retry state is a JSON object, not {type(data).__name__}")
        unknown = set(data) - _STATE_FIELDS
        if unknown:
            raise ValueError(f"unknown retry state field(s): {', '.join(sorted(unknown))}")
        state = cls(**data)
        if not (
            _is_count(state.failures)
            and _is_count(state.strikes)
            and (state.strike_mark is None or isinstance(state.strike_mark, str))
            and isinstance(state.may_have_arrived, bool)
        ):
            raise ValueError(f"not a retry state: {dict(data)!r}")
        return state

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict` (``{}`` for a goal never tried)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> RetryState:
        """The state :meth:`to_json` gave. Raises ValueError for anything else."""
        return cls.from_dict(None if text is None else json.loads(text))


_STATE_FIELDS = frozenset(field.name for field in dataclasses.fields(RetryState))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    """The API answers: every worker sends."""
    OPEN = "open"
    """The API looks down: nothing is sent until the next probe is due."""
    HALF_OPEN = "half-open"
    """One probe request is in flight; its answer decides."""


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """Permission to send one request, from :meth:`CircuitBreaker.admit`."""

    epoch: int
    probe: int = 0
    """The probe's number, or 0 for a request sent while the breaker was closed."""
    sent: int = 0
    """The request's number in the order requests were admitted."""


class CircuitBreaker:
    """Whether the API is up, shared by one transport's workers so a down API is probed.

    - closed: everything is sent. ``FAILURES_TO_OPEN`` transient failures in a row open it; a
      ``Retry-After`` opens it at once until then.
    - open: nothing is sent until the next probe is due: ``FIRST_INTERVAL``, doubling with
      each failed probe up to ``probe_interval_max`` (jittered down by up to 20%, so that
      processes restarted together do not probe together), or the ``Retry-After`` if later.
    - refused: an open breaker whose cause is the key (401/403, :meth:`refused`): probes go
      ``REFUSED_FIRST_INTERVAL`` apart, doubling up to ``refused_interval_max``; once the key
      has been refused for ``refusal_give_up`` seconds, :meth:`refusal_expired` says held goals
      fail (with the status) instead of waiting.
    - half-open: exactly one probe request is in flight. Any answer from the API (delivered, or
      a final refusal such as a 400) closes the breaker and every worker resumes at once; a
      transient failure opens it again for a longer interval. A probe unanswered after the
      interval (a blackholed API holds it until the request's timeout) counts as failed, and
      the next probe goes: one request per interval reaches a down API, never more.

    Failures of requests sent before the breaker opened count nothing (four workers failing
    together are one failure of the API, not four); neither do late successes of requests sent
    before it opened (they do not close it), nor of requests sent before a run of failures began
    (they do not end that run).

    It says what happens, once per outage, on the ``goaltrack`` logger: a WARNING when it opens
    (an ERROR naming the status and what to check when the key is refused), with the number of
    goals held (*held*, a callable, when the transport gives one), and a line when the API is
    back, saying how long it was down and how many goals it held: a WARNING when the outage's
    start was (so that a log showing warnings shows the all-clear too), an INFO otherwise. An
    outage that begins within ``QUIET_AFTER_WARNING`` seconds of the last warning (a flapping
    API) is counted and mentioned in the next warning instead.

    Not thread-safe: the transport's lock guards every call. Times are a :class:`Clock`'s
    ``monotonic()``, passed in by the caller.
    """

    FAILURES_TO_OPEN = 3
    FIRST_INTERVAL = 0.25
    REFUSED_FIRST_INTERVAL = 2.0
    QUIET_AFTER_WARNING = 60.0

    def __init__(
        self,
        probe_interval_max: float = 1.0,
        rng: random.Random | None = None,
        *,
        held: Callable[[], int] | None = None,
        refused_interval_max: float = 60.0,
        refusal_give_up: float = 3600.0,
        name: str = "the API",
    ) -> None:
        self.probe_interval_max = probe_interval_max
        self.refused_interval_max = refused_interval_max
        self.refusal_give_up = refusal_give_up
        self.held = held
        """How many goals the transport holds (for the log lines), when it can say."""
        self.name = name
        self.state = BreakerState.CLOSED
        self.epoch = 0
        """Incremented each time the breaker opens."""
        self.refusal: DeliveryResult | None = None
        """The latest answer refusing the key, while the breaker is open for that reason."""
        self.refused_since: float | None = None
        self._rng = rng or random.Random()
        self._admitted = 0
        self._failures_in_a_row = 0
        self._streak_began = 0  # admission number of the first failed request of the run
        self._down_since = 0.0  # when the first failure of the run (or the refusal) was seen
        self._interval = 0.0
        self._next_probe_at = 0.0
        self._probe = 0
        self._announced = False  # the current outage's start was logged (WARNING or ERROR)
        self._last_warning = -math.inf
        self._unannounced_outages = 0

    @property
    def wake_at(self) -> float | None:
        """When a request may next be admitted; None while closed (at once)."""
        return None if self.state is BreakerState.CLOSED else self._next_probe_at

    def would_admit(self, now: float) -> bool:
        """Whether :meth:`admit` would give a ticket now (without taking one)."""
        return self.state is BreakerState.CLOSED or now >= self._next_probe_at

    def admit(self, now: float) -> Ticket | None:
        """A ticket to send one request now, or None (then wait until :attr:`wake_at`)."""
        self._admitted += 1
        if self.state is BreakerState.CLOSED:
            return Ticket(self.epoch, 0, self._admitted)
        if now < self._next_probe_at:
            return None
        if self.state is BreakerState.HALF_OPEN:
            self._grow()  # the probe in flight went unanswered for a whole interval
        self.state = BreakerState.HALF_OPEN
        self._probe += 1
        self._next_probe_at = now + self._jittered()
        return Ticket(self.epoch, self._probe, self._admitted)

    def release(self, ticket: Ticket) -> None:
        """*ticket* was not used (nothing was due): a probe it admitted may go at once."""
        if ticket.probe and ticket.probe == self._probe and self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self._next_probe_at = 0.0

    def succeeded(self, ticket: Ticket, now: float) -> bool:
        """The API answered *ticket*'s request. True when that closed the breaker."""
        if self.state is BreakerState.CLOSED:
            # Only an answer to a request sent after the run of failures began ends it: a late
            # answer to an earlier one says nothing about the API now.
            if ticket.sent > self._streak_began:
                self._failures_in_a_row = 0
            return False
        if ticket.epoch != self.epoch:
            return False  # a late answer to a request sent before it opened: says nothing now
        self._announce_recovery(now)
        self.state = BreakerState.CLOSED
        self._failures_in_a_row = 0
        self._interval = 0.0
        self._next_probe_at = 0.0
        self.refusal = None
        self.refused_since = None
        return True

    def failed(self, ticket: Ticket, result: DeliveryResult, now: float) -> bool:
        """A transient failure of *ticket*'s request. True if it looks isolated to that goal.

        Isolated: the breaker was closed, stays closed, and the request was sent since it last
        closed. Such failures may count against a goal's ``max_retries``; the others are the
        outage's, and count nothing.
        """
        if result.retry_after is not None:  # the API asked every request to wait
            self._open(now, now + result.retry_after, result)
            return False
        if self.state is BreakerState.CLOSED:
            if ticket.epoch != self.epoch:
                return False  # sent before an outage that has ended since
            if self._failures_in_a_row == 0:
                self._streak_began = ticket.sent
                self._down_since = now
            self._failures_in_a_row += 1
            if self._failures_in_a_row < self.FAILURES_TO_OPEN:
                return True
            self._open(now, now, result)
            return False
        self._probe_failed(ticket, now)
        return False

    def refused(self, ticket: Ticket, result: DeliveryResult, now: float) -> None:
        """The API refused the key (401/403) on *ticket*'s request: the account is down.

        Opens the breaker (logging one ERROR naming the status and what to check) or, while it
        is refused already, counts a failed probe. A late refusal of a request sent before the
        breaker last closed says nothing now.
        """
        if self.state is BreakerState.CLOSED and ticket.epoch != self.epoch:
            return
        if self.refusal is not None:
            self.refusal = result
            self._probe_failed(ticket, now)
            return
        if self.state is BreakerState.CLOSED:
            self.epoch += 1
            self._down_since = now
        self.state = BreakerState.OPEN
        self.refusal = result
        self.refused_since = now
        self._failures_in_a_row = 0
        self._interval = min(self.REFUSED_FIRST_INTERVAL, self.refused_interval_max)
        self._next_probe_at = now + self._jittered()
        self._announced = True
        status = result.status or 401
        if self.refusal_give_up <= 0:  # nothing is held (sync mode): each goal fails now
            logger.error(
                "goaltrack: %s refused the API key (%s): %s. Goals fail with HTTP %d until it "
                "accepts the key again (one probe request every %g s, growing to %g s)",
                self.name,
                redact(result.reason),
                _REFUSED_ADVICE.get(status, _REFUSED_ADVICE[401]),
                status,
                self.REFUSED_FIRST_INTERVAL,
                self.refused_interval_max,
            )
            return
        logger.error(
            "goaltrack: %s refused the API key (%s): %s. No goal is lost: goals are held%s and "
            "sent when a probe is accepted (one request every %g s, growing to %g s); if the key "
            "is still refused after %g s, held goals fail with HTTP %d",
            self.name,
            redact(result.reason),
            _REFUSED_ADVICE.get(status, _REFUSED_ADVICE[401]),
            self._held_text(),
            self.REFUSED_FIRST_INTERVAL,
            self.refused_interval_max,
            self.refusal_give_up,
            status,
        )

    def refusal_expired(self, now: float) -> bool:
        """The key has been refused for ``refusal_give_up`` seconds: held goals fail now."""
        return self.refused_since is not None and now - self.refused_since >= self.refusal_give_up

    def refusal_failure(self, result: DeliveryResult | None = None) -> DeliveryResult:
        """The final failure of a goal held by a refusal that lasted too long."""
        last = result or self.refusal
        assert last is not None
        if self.refusal_give_up <= 0:  # nothing was held: the refusal itself is the reason
            return DeliveryResult(Outcome.FAILED, redact(last.reason), status=last.status)
        return DeliveryResult(
            Outcome.FAILED,
            redact(
                f"{last.reason} (the key was refused for more than {self.refusal_give_up:g} s: "
                "refusal_give_up)"
            ),
            status=last.status,
        )

    def _probe_failed(self, ticket: Ticket, now: float) -> None:
        if ticket.probe and ticket.probe == self._probe and ticket.epoch == self.epoch:
            self._grow()
            self.state = BreakerState.OPEN
            self._next_probe_at = max(self._next_probe_at, now + self._jittered())

    def _open(self, now: float, not_before: float, result: DeliveryResult) -> None:
        if self.state is BreakerState.CLOSED:
            self.state = BreakerState.OPEN
            self.epoch += 1
            if self._failures_in_a_row == 0:  # opened by a Retry-After, not by a run of failures
                self._down_since = now
            self._interval = min(self.FIRST_INTERVAL, self.probe_interval_max)
            self._next_probe_at = now + self._jittered()
            self._announce_outage(now, result)
        self._next_probe_at = max(self._next_probe_at, not_before)
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN

    def _announce_outage(self, now: float, result: DeliveryResult) -> None:
        if now - self._last_warning < self.QUIET_AFTER_WARNING:
            self._unannounced_outages += 1  # flapping: said once a minute at most
            self._announced = False
            return
        earlier = self._unannounced_outages
        self._unannounced_outages = 0
        self._last_warning = now
        self._announced = True
        if result.retry_after is not None:
            what = f"asked to wait {result.retry_after:g} s"
        else:
            what = "is not answering"
        logger.warning(
            "goaltrack: %s %s (%s): goals are held%s and retried when it answers (one probe "
            "request at a time, up to %g s apart)%s",
            self.name,
            what,
            redact(result.reason),
            self._held_text(),
            self.probe_interval_max,
            f"; {earlier} shorter outage(s) since the last warning" if earlier else "",
        )

    def _announce_recovery(self, now: float) -> None:
        # The all-clear pairs with the alarm: where a WARNING (or the refused key's ERROR) said
        # the API was down, a log that shows only warnings must show that it is back too.
        level = logging.WARNING if self._announced else logging.INFO
        self._announced = False
        down = max(0.0, now - self._down_since)
        if self.refusal is not None:
            what = f"accepts the API key again after {down:.1f} s"
        else:
            what = f"is back after {down:.1f} s"
        logger.log(
            level, "goaltrack: %s %s; delivering the %s held", self.name, what, self._held_goals()
        )

    def _held_count(self) -> int | None:
        if self.held is None:
            return None
        try:
            return self.held()
        except Exception:  # a count for a log line must not break delivery
            return None

    def _held_goals(self) -> str:
        count = self._held_count()
        return "goals" if count is None else f"{count} goal(s)"

    def _held_text(self) -> str:
        count = self._held_count()
        return "" if count is None else f" ({count} now)"

    def _grow(self) -> None:
        cap = self.refused_interval_max if self.refusal is not None else self.probe_interval_max
        self._interval = min(cap, max(self._interval, 0.001) * 2)

    def _jittered(self) -> float:
        return self._interval * self._rng.uniform(0.8, 1.0)

    def __repr__(self) -> str:
        refused = " refused" if self.refusal is not None else ""
        return f"<CircuitBreaker {self.state.value}{refused} epoch={self.epoch}>"


class InFlightLimit:
    """How many requests one transport may have in flight now: grown while goals wait and the
    API answers, cut at each failure.

    It starts at :data:`START_IN_FLIGHT` (or the ceiling, if lower), gains one for each goal
    delivered while others wait (so it doubles within a round trip when the API keeps up, as a
    TCP window does), up to the ceiling (``max_in_flight``), and halves, never below its start,
    at each transient failure. A transport under light load stays at its start; one whose app
    tracks faster than its start can deliver reaches the rate it needs; and an API that begins
    to fail gets at most the requests already in flight, as the breaker then admits one probe
    at a time.

    Not thread-safe: the transport's lock guards every call.
    """

    START_IN_FLIGHT = 4

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.start = min(self.START_IN_FLIGHT, self.ceiling)
        self.limit = self.start

    def admits(self, in_flight: int) -> bool:
        """Whether one more request may go with *in_flight* requests out already."""
        return in_flight < self.limit

    def answered(self, waiting: bool) -> bool:
        """The API answered a request; *waiting*: goals are waiting for a slot. True when the
        limit grew (the transport may need another worker)."""
        if waiting and self.limit < self.ceiling:
            self.limit += 1
            return True
        return False

    def failed(self) -> None:
        """A request failed transiently (an error, a timeout, a 5xx or a 429)."""
        self.limit = max(self.start, self.limit // 2)

    def __repr__(self) -> str:
        return f"<InFlightLimit {self.limit} of {self.ceiling}>"


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's result means for its goal (from :func:`judge`)."""

    state: RetryState
    """The goal's retry state from now on: what the transport keeps with it."""
    retry_in: float | None = None
    """Seconds until the goal's next attempt; None: it is settled."""
    final: DeliveryResult | None = None
    """Its final failure, when it failed for good (None and no ``retry_in``: delivered)."""
    api_back: bool = False
    """This answer closed the breaker: the goals the outage held back are due now."""


def judge(
    breaker: CircuitBreaker,
    policy: RetryPolicy,
    state: RetryState,
    ticket: Ticket | None,
    result: DeliveryResult | None,
    *,
    now: float,
    age: float,
    mark_prefix: str = "",
) -> Verdict:
    """Tell *breaker* about one attempt and decide what becomes of its goal.

    The one place where every transport settles a result, and the only one that makes a goal's
    next :class:`RetryState`, so that the rules (which failures count, when a goal is given up,
    when the outage is over) cannot drift apart.

    *ticket* None: the breaker did not admit the attempt (*result* is ignored): the goal fails
    if the key has been refused for ``refusal_give_up`` or it is older than ``give_up_after``,
    else it waits for the next probe, its backoff growing without a strike.

    The caller holds the lock that guards *breaker*; *now* is the clock's ``monotonic()``, *age*
    the seconds since the goal was tracked, *mark_prefix* names the breaker's process where
    another process may retry the goal (outbox, Celery).
    """
    if ticket is None or result is None:
        if breaker.refusal_expired(now):
            return Verdict(state, final=breaker.refusal_failure())
        if age >= policy.give_up_after:
            return Verdict(state, final=policy.final_failure(state, _NOT_ADMITTED, age))
        # Later, without a request and without a strike; the backoff still grows, so that a
        # broker is not flooded with tasks that may not send.
        state = dataclasses.replace(state, failures=state.failures + 1)
        wait = policy.backoff(state)
        if breaker.wake_at is not None:
            wait = max(wait, breaker.wake_at - now)
        return Verdict(state, retry_in=wait)
    if result.outcome is Outcome.DELIVERED:
        return Verdict(state, api_back=breaker.succeeded(ticket, now))
    if result.outcome is Outcome.FAILED and result.status in REFUSED_STATUSES:
        # The key is refused: the account's outage, held by the breaker like any other. The
        # goal keeps its retries (the failure is not its own) and is due at the next probe.
        breaker.refused(ticket, result, now)
        state = dataclasses.replace(state, strike_mark=None)
        if breaker.refusal_expired(now):
            return Verdict(state, final=breaker.refusal_failure(result))
        return Verdict(state, retry_in=max(0.0, (breaker.wake_at or now) - now))
    if result.outcome is Outcome.FAILED:  # the API answered: it is up, the goal is refused
        return Verdict(state, final=result, api_back=breaker.succeeded(ticket, now))
    result = policy.capped(result)
    isolated = breaker.failed(ticket, result, now)
    mark = f"{mark_prefix}{breaker.epoch}"
    strikes = state.strikes
    if state.strike_mark is not None and state.strike_mark == mark:
        strikes += 1  # its previous failure was not followed by an outage
    state = RetryState(
        failures=state.failures + 1,
        strikes=strikes,
        strike_mark=mark if isolated else None,
        may_have_arrived=state.may_have_arrived or result.may_have_arrived,
    )
    if (isolated and strikes >= policy.max_retries) or age >= policy.give_up_after:
        return Verdict(state, final=policy.final_failure(state, result, age))
    if result.retry_after is not None:
        delay = min(result.retry_after, policy.backoff_max)
    else:
        delay = policy.backoff(state)
    if not isolated and breaker.wake_at is not None:
        # The outage's failure: the goal is due with the next probe (a Retry-After included),
        # not after its own backoff, which grows with each failed probe and would outlast the
        # outage: a lone goal is the probe, and the breaker admits one request at a time.
        delay = max(0.0, breaker.wake_at - now)
    return Verdict(state, retry_in=delay)


_NOT_ADMITTED = DeliveryResult(Outcome.RETRY, "the API was down: no attempt was admitted")


# -- the breakers ------------------------------------------------------------------------------


def new_breaker(
    policy: RetryPolicy,
    name: str,
    *,
    held: Callable[[], int] | None = None,
    rng: random.Random | None = None,
) -> CircuitBreaker:
    """A breaker with *policy*'s probe intervals and refusal limit: how every one is made.

    The background and outbox transports each keep the one they make: their own lock guards it
    together with their queue (a wake-up depends on both), which a shared breaker's lock could
    not. The breakers shared by a process are :func:`shared_breaker`'s.
    """
    return CircuitBreaker(
        policy.probe_interval_max,
        rng,
        held=held,
        refused_interval_max=policy.refused_probe_interval_max,
        refusal_give_up=policy.refusal_give_up,
        name=name,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SharedBreaker:
    """A breaker shared by a process's deliveries to one destination, and the lock guarding it."""

    breaker: CircuitBreaker
    lock: threading.Lock


_shared: PerProcess[tuple[str, str, float, float, float], SharedBreaker] = PerProcess()


def shared_breaker(endpoint: Endpoint, policy: RetryPolicy) -> SharedBreaker:
    """This process's breaker for *endpoint* (its URL and key) and *policy*'s breaker settings:
    Celery tasks, ``sync`` calls.

    Made on first use; a forked child starts with none (its own view of the API).
    """
    key = (
        endpoint.url,
        endpoint.key_fp,
        policy.probe_interval_max,
        policy.refused_probe_interval_max,
        policy.refusal_give_up,
    )
    return _shared.get(
        key,
        lambda: SharedBreaker(new_breaker(policy, f"the API at {endpoint.url}"), threading.Lock()),
    )
