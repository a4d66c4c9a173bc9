"""Fault injection for the fake API: the settings counted in requests and the schedule in time.

This module owns what each fault field means, its validation (a bad value is a ``ValueError``
naming the field, before anything changes), the schedule of windows (down, blackhole, trickle,
a refused key, and a flap) in wall-clock epoch seconds, and the precedence between faults for one
request: blackhole, down, a refused key (401 for the window's first half, 403 for the second),
then ``reset_next``, ``fail_next``, ``rate_limit_next``, ``error_rate``, and once
the body is read ``fail_names`` (a goal-specific failure); trickling
slows whatever the answer is, and ``huge_body_next`` pads the next successes. How the answers are
put on the wire (held, trickled, padded) is the app's job (:mod:`.app`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Literal, TypeGuard

from goaltrack.testing.fake_api.rules import Rejection

__all__ = [
    "BLACKHOLE_HOLD_MAX_S",
    "Dropped",
    "FaultSettings",
    "Faults",
    "Flap",
    "Schedule",
    "Window",
    "check_faults",
]

# A request caught by a blackhole is dropped after this long if its client is still waiting.
BLACKHOLE_HOLD_MAX_S = 600.0


class Dropped(Exception):
    """The injected reset_next fault: answer with a broken response."""


@dataclass
class FaultSettings:
    """The fault settings: counts of requests to fail, and how the schedule's answers look."""

    latency_ms: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    rate_limit_next: int = 0
    retry_after: float = 1.0
    retry_after_http_date: bool = False
    reset_next: int = 0
    error_rate: float = 0.0
    error_status: int = 500
    seed: int = 0
    down_status: int = 503
    trickle_bytes_per_s: float = 1.0
    huge_body_next: int = 0
    huge_body_bytes: int = 50_000_000
    fail_names: list[str] = dataclasses.field(default_factory=list)
    """Goal names answered with ``fail_status`` every time: a goal-specific 5xx while the API
    answers every other goal."""
    retry_after_raw: str = ""
    """When set, the 429s' ``Retry-After`` header verbatim (``inf``, ``1e400``, ``-5``, a date a
    day ahead, garbage): what a hostile or broken server sends."""
    echo_authorization: bool = False
    """Error bodies repeat the request's ``Authorization`` header, as a proxy's debugging page
    might: the key must still appear in no log line or reason."""


ScheduleKind = Literal["down", "blackhole", "trickle", "refused"]


@dataclass(frozen=True)
class Window:
    """One scheduled window, in wall-clock epoch seconds: ``start <= t < end``."""

    kind: ScheduleKind
    start: float
    end: float


@dataclass(frozen=True)
class Flap:
    """Up for ``up_s``, then down for ``down_s``, repeated from ``start`` until ``end``."""

    start: float
    up_s: float
    down_s: float
    end: float | None  # None: until cleared

    @property
    def period(self) -> float:
        return self.up_s + self.down_s

    def is_down(self, at: float) -> bool:
        if at < self.start or (self.end is not None and at >= self.end):
            return False
        return (at - self.start) % self.period >= self.up_s

    def down_windows(self, now: float) -> list[Window]:
        """Every down phase; an endless flap's up to the first one that starts after ``now``."""
        end = self.end if self.end is not None else math.inf
        until = end if self.end is not None else now + self.period
        windows: list[Window] = []
        cycle = 0
        while True:
            start = self.start + cycle * self.period + self.up_s
            if start >= end or start > until:
                return windows
            windows.append(Window("down", start, min(start + self.down_s, end)))
            cycle += 1


@dataclass
class Schedule:
    """The time-shaped faults: windows set by ``down_for`` & co., and at most one flap."""

    windows: list[Window] = dataclasses.field(default_factory=list)
    flap: Flap | None = None

    def active(self, kind: ScheduleKind, at: float) -> bool:
        if kind == "down" and self.flap is not None and self.flap.is_down(at):
            return True
        return any(w.kind == kind and w.start <= at < w.end for w in self.windows)

    def outages(self, now: float) -> list[Window]:
        """The down and blackhole windows, a flap's expanded, by start time."""
        windows = [w for w in self.windows if w.kind in ("down", "blackhole")]
        if self.flap is not None:
            windows += self.flap.down_windows(now)
        return sorted(windows, key=lambda w: (w.start, w.end))

    def refused_status(self, at: float) -> int | None:
        """401 in the first half of a refused-key window, 403 in the second; else None."""
        for w in self.windows:
            if w.kind == "refused" and w.start <= at < w.end:
                return 401 if at < (w.start + w.end) / 2 else 403
        return None

    def report(self, now: float) -> dict[str, object]:
        flap = self.flap
        return {
            "outages": [
                {"kind": w.kind, "start": w.start, "end": w.end} for w in self.outages(now)
            ],
            "trickles": [
                {"start": w.start, "end": w.end} for w in self.windows if w.kind == "trickle"
            ],
            "flap": None if flap is None else dataclasses.asdict(flap),
            "refused": [
                {"start": w.start, "end": w.end} for w in self.windows if w.kind == "refused"
            ],
        }


# ---- validation ---------------------------------------------------------------------------------

_ERROR_STATUSES = frozenset(status.value for status in HTTPStatus if status >= 400)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_duration(value: object) -> bool:
    return _is_number(value) and value > 0


def _is_pair(value: object) -> TypeGuard[list[float] | tuple[float, float]]:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(_is_number(item) for item in value)
    )


def _is_error_status(value: object) -> bool:
    return _is_count(value) and value in _ERROR_STATUSES


_FAULT_CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "latency_ms": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "fail_next": ("an integer >= 0", _is_count),
    "fail_status": ("an HTTP error status", _is_error_status),
    "rate_limit_next": ("an integer >= 0", _is_count),
    "retry_after": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
    "retry_after_http_date": ("true or false", lambda v: isinstance(v, bool)),
    "reset_next": ("an integer >= 0", _is_count),
    "error_rate": ("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1),
    "error_status": ("an HTTP error status", _is_error_status),
    "seed": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "down_status": ("an HTTP error status", _is_error_status),
    "trickle_bytes_per_s": ("a number > 0", _is_duration),
    "huge_body_next": ("an integer >= 0", _is_count),
    "huge_body_bytes": ("an integer >= 0", _is_count),
    "fail_names": (
        "a list of goal names",
        lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
    ),
    "retry_after_raw": (
        "a string of at most 200 characters",
        lambda v: isinstance(v, str) and len(v) <= 200 and "\n" not in v and "\r" not in v,
    ),
    "echo_authorization": ("true or false", lambda v: isinstance(v, bool)),
    # The schedule: each of these adds a window starting from the call.
    "down_for": ("a number of seconds > 0", _is_duration),
    "down_between": (
        "[start, end]: seconds from now, 0 <= start < end",
        lambda v: _is_pair(v) and 0 <= v[0] < v[1],
    ),
    "flap": (
        "[up_s, down_s]: two numbers of seconds > 0",
        lambda v: _is_pair(v) and v[0] > 0 and v[1] > 0,
    ),
    "flap_for": ("a number of seconds > 0", _is_duration),
    "blackhole_for": ("a number of seconds > 0", _is_duration),
    "trickle_for": ("a number of seconds > 0", _is_duration),
    "refuse_key_for": ("a number of seconds > 0", _is_duration),
}
# Fields that add to the schedule instead of changing a setting.
_SCHEDULE_FIELDS = frozenset(
    {
        "down_for",
        "down_between",
        "flap",
        "flap_for",
        "blackhole_for",
        "trickle_for",
        "refuse_key_for",
    }
)


def check_faults(fields: Mapping[str, object]) -> None:
    """Raise ValueError, naming the field and what it must be, for the first bad one."""
    for name, value in fields.items():
        if name not in _FAULT_CHECKS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(_FAULT_CHECKS)}")
        description, valid = _FAULT_CHECKS[name]
        if not valid(value):
            raise ValueError(f"fault {name} must be {description}, not {value!r}")
    if "flap_for" in fields and "flap" not in fields:
        raise ValueError("fault flap_for needs flap=[up_s, down_s] in the same call")


def _retry_after(seconds: float, http_date: bool) -> str:
    if http_date:
        # Rounded up so that the date is never sooner than the delay asked for.
        when = datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)
        return format_datetime(when, usegmt=True)
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


# ---- one state's faults -------------------------------------------------------------------------


class Faults:
    """The settings, schedule and random sequence of one fake API; its state holds the lock."""

    def __init__(self) -> None:
        self.settings = FaultSettings()
        self.schedule = Schedule()
        self._random = random.Random(self.settings.seed)

    def update(self, fields: Mapping[str, object], now: float) -> None:
        """Check ``fields``, merge the settings, add their windows counted from ``now``."""
        check_faults(fields)
        for name, value in fields.items():
            if name not in _SCHEDULE_FIELDS:
                setattr(self.settings, name, value)
        if "seed" in fields:
            self._random = random.Random(self.settings.seed)
        for kind in ("down", "blackhole", "trickle"):
            length = fields.get(f"{kind}_for")
            if _is_number(length):
                self.schedule.windows.append(Window(kind, now, now + length))
        refused = fields.get("refuse_key_for")
        if _is_number(refused):
            self.schedule.windows.append(Window("refused", now, now + refused))
        between = fields.get("down_between")
        if _is_pair(between):
            self.schedule.windows.append(Window("down", now + between[0], now + between[1]))
        flap = fields.get("flap")
        if _is_pair(flap):
            flap_for = fields.get("flap_for")
            end = now + flap_for if _is_number(flap_for) else None
            self.schedule.flap = Flap(now, float(flap[0]), float(flap[1]), end)

    def report(self, now: float) -> dict[str, object]:
        return {**dataclasses.asdict(self.settings), **self.schedule.report(now)}

    @property
    def latency_seconds(self) -> float:
        return self.settings.latency_ms / 1000

    def blackholed(self, at: float) -> bool:
        return self.schedule.active("blackhole", at)

    def trickle_rate(self, at: float) -> float | None:
        """Bytes per second for the answer to a request arriving at ``at``, if trickled."""
        if self.schedule.active("trickle", at):
            return self.settings.trickle_bytes_per_s
        return None

    def inject(self, at: float) -> None:
        """Raise the fault that answers a request arriving at ``at``, if any.

        A down window first (it uses up no count fault), then the count faults in order.
        """
        settings = self.settings
        if self.schedule.active("down", at):
            raise Rejection(settings.down_status, "injected outage", fault="down")
        refused = self.schedule.refused_status(at)
        if refused == 401:
            raise Rejection(401, "Invalid API key (injected)", fault="refused")
        if refused == 403:
            raise Rejection(
                403, "Tracking is suspended for this website (injected)", fault="refused"
            )
        if settings.reset_next:
            settings.reset_next -= 1
            raise Dropped
        if settings.fail_next:
            settings.fail_next -= 1
            raise Rejection(settings.fail_status, "injected failure", fault="fail_next")
        if settings.rate_limit_next:
            settings.rate_limit_next -= 1
            retry_after = settings.retry_after_raw or _retry_after(
                settings.retry_after, settings.retry_after_http_date
            )
            headers = {"Retry-After": retry_after}
            raise Rejection(429, "Too many requests", headers, fault="rate_limit_next")
        if settings.error_rate and self._random.random() < settings.error_rate:
            raise Rejection(settings.error_status, "injected random failure", fault="error_rate")

    def inject_for_name(self, name: str | None) -> None:
        """Raise the goal-specific failure for a goal named ``name``, if ``fail_names`` has it."""
        if name is not None and name in self.settings.fail_names:
            raise Rejection(
                self.settings.fail_status, "injected failure for this goal", fault="fail_names"
            )

    def take_huge_body(self) -> int | None:
        """For a successful answer: the size to pad its body to, if huge_body_next says so."""
        if not self.settings.huge_body_next:
            return None
        self.settings.huge_body_next -= 1
        return self.settings.huge_body_bytes
