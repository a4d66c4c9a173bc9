"""The fake provider API: a Starlette app and the in-memory state behind it.

This module owns the create-goal rules as the fake enforces them, fault injection, and the
``/_fake/`` control and inspection endpoints. The rules are written from the providers' public
contracts, independently of goaltrack's client-side validation, so that the fake catches the
client's mistakes instead of repeating them. Where to look:

- per-provider rules: the ``PROVIDERS`` table; body and metadata rules: the functions below it;
- order of checks for one goal request: ``FakeAPIState._handle_goal`` (latency, the fault
  schedule, count faults, auth, Flowsery's rate limit, body, pageview);
- routes: ``POST [/<provider>]/api/v1/goals`` (the bare path serves the default provider) and
  ``POST [/flowsery]/analytics/api/v1/goals``; the ``/_fake/`` endpoints: ``_Endpoints.routes``;
- the tracking script, ``GET [/<provider>]/js/script.js``: like the providers' own, it sets the
  visitor and session cookies on the page's origin and records a pageview with a cross-origin
  ``POST [/<provider>]/api/events`` (answered with CORS headers): ``tracking_script``.

Faults, set with ``FakeAPIState.set_faults(...)`` or ``POST /_fake/faults`` (same fields, JSON):

- counted in requests: ``fail_next`` (``fail_status``), ``rate_limit_next`` (429,
  ``retry_after``, ``retry_after_http_date``), ``reset_next`` (connection dropped),
  ``error_rate`` (``error_status``, ``seed``), ``huge_body_next`` (a success padded to
  ``huge_body_bytes``); ``latency_ms`` delays every answer;
- shaped in time, from the call on: ``down_for=s`` and ``down_between=(t0, t1)`` (answered
  ``down_status``, default 503), ``flap=(up_s, down_s)`` with optional ``flap_for`` (up first,
  then down, repeated), ``blackhole_for=s`` (read, never answered, held until the client
  leaves), ``trickle_for=s`` (the body sent ``trickle_bytes_per_s`` bytes a second, default 1);
- precedence: blackhole, down, the count faults, the provider's rules; trickling slows whatever
  the answer is. ``FakeAPIState.faults`` lists every window in epoch seconds (``outages``,
  ``trickles``, ``flap``); ``outage_windows()`` gives the merged ``(start, end)`` pairs, to
  compare with each record's ``received_at_epoch``.

Simplifications, on purpose: a pageview registers a visitor for a provider whatever the key or
website; any key with the right prefix is valid until revoked, suspended or denied.
Run it with :class:`goaltrack.testing.FakeAPIServer` or ``python -m goaltrack.fakeapi``.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import html
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime
from http import HTTPStatus
from typing import Literal, TypedDict, TypeGuard

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "PROVIDERS",
    "FakeAPIState",
    "GoalRecord",
    "PageviewRecord",
    "ProviderRules",
    "RequestRecord",
    "create_app",
    "tracking_script",
]

GOALS_PATH = "/api/v1/goals"
CLI_GOALS_PATH = "/analytics/api/v1/goals"  # what Flowsery's own CLI posts to


@dataclass(frozen=True)
class ProviderRules:
    """What one provider's create-goal endpoint accepts, as the fake enforces it."""

    name: str
    goal_paths: tuple[str, ...]
    key_prefixes: tuple[str, ...]  # empty: any non-empty bearer key
    scoped_prefix: str | None  # a token of this prefix must name its website in the query
    scope_params: tuple[str, ...]  # the query parameters that can name it
    visitor_fields: tuple[str, ...]  # body fields holding the visitor id; the first present wins
    visitor_required: bool
    session_field: str | None
    name_pattern: re.Pattern[str]
    normalise_name: bool  # lowercase and spaces -> "_" before the pattern is checked
    reserved_names: frozenset[str]
    text_fields: tuple[str, ...]  # optional free-text fields, stored as sent
    needs_pageview: bool  # visitor unknown -> 404; visitor is a bot -> 400
    envelope: Literal["datafast", "nest"]  # error body: {"status":"error",...} or NestJS style
    success_message: str
    returns_event_id: bool
    rate_limited: bool  # FakeAPIState.flowsery_rate_limit applies
    created_status_configurable: bool  # FakeAPIState.flowsery_created_status applies


PROVIDERS: dict[str, ProviderRules] = {
    "datafast": ProviderRules(
        name="datafast",
        goal_paths=(GOALS_PATH,),
        key_prefixes=("df_", "dft_"),
        scoped_prefix="dft_",
        scope_params=("websiteId",),
        visitor_fields=("datafast_visitor_id", "visitorId"),
        visitor_required=True,
        session_field=None,
        name_pattern=re.compile(r"[a-z0-9_:-]{1,64}"),
        normalise_name=True,
        reserved_names=frozenset({"identify"}),
        text_fields=("description",),
        needs_pageview=True,
        envelope="datafast",
        success_message="Custom event created successfully",
        returns_event_id=True,
        rate_limited=False,
        created_status_configurable=False,
    ),
    "faurya": ProviderRules(
        name="faurya",
        goal_paths=(GOALS_PATH,),
        key_prefixes=(),
        scoped_prefix=None,
        scope_params=(),
        visitor_fields=("faurya_visitor_id",),
        visitor_required=True,
        session_field="faurya_session_id",
        name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
        normalise_name=False,
        reserved_names=frozenset(),
        text_fields=(),
        needs_pageview=True,
        envelope="datafast",
        success_message="Custom event created successfully",
        returns_event_id=True,
        rate_limited=False,
        created_status_configurable=False,
    ),
    "flowsery": ProviderRules(
        name="flowsery",
        goal_paths=(GOALS_PATH, CLI_GOALS_PATH),
        key_prefixes=("flow_",),
        scoped_prefix="flow_ws_",
        scope_params=("websiteId", "domain"),
        visitor_fields=("visitorUid",),
        visitor_required=False,
        session_field="sessionUid",
        name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
        normalise_name=False,
        reserved_names=frozenset(),
        text_fields=("timezone",),
        needs_pageview=False,
        envelope="nest",
        success_message="Goal created successfully",
        returns_event_id=False,
        rate_limited=True,
        created_status_configurable=True,
    ),
}

# Metadata rules, the same for every provider.
METADATA_MAX_KEYS = 10
METADATA_KEY = re.compile(r"[a-z0-9_-]{1,64}")
# Counted in UTF-16 code units, as the providers' JavaScript backends count String.length.
METADATA_VALUE_MAX = 255
RATE_LIMIT_WINDOW_S = 60.0
# A request caught by a blackhole is dropped after this long if its client is still waiting.
BLACKHOLE_HOLD_MAX_S = 600.0
_HOLD_POLL_S = 0.1  # how often a held request looks at the server's stopping flag
_PAD_OPEN = b',"padding":"'
_PAD_CHUNK = b"x" * 65536

# HTML and script removal for stored metadata values, applied in this order until nothing changes.
_SANITISERS = (
    re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL),
    re.compile(r"<[^>]*>"),
    re.compile(r"[<>'\"&]"),
    re.compile(r"javascript:", re.IGNORECASE),
    re.compile(r"\bon\w+\s*=", re.IGNORECASE),
)


class GoalRecord(TypedDict):
    """One accepted goal, as ``GET /_fake/goals`` and ``FakeAPIState.goals`` show it."""

    provider: str
    name: str
    visitor_id: str | None
    session_id: str | None
    metadata: dict[str, str]
    description: str | None
    timezone: str | None
    event_id: str | None
    website_id: str | None  # from ?websiteId= (or Flowsery's ?domain=); None for website keys
    key_hint: str  # never the key itself
    received_at: str  # ISO 8601, UTC, milliseconds
    received_at_epoch: float  # the same instant as time.time(), for sub-second arithmetic


class PageviewRecord(TypedDict):
    """One pageview, as ``FakeAPIState.pageviews`` shows it."""

    provider: str
    visitor_id: str
    session_id: str | None
    url: str | None  # the page's address, as the tracking script reported it
    source: Literal["script", "control"]  # the tracking script, or add_pageview / /_fake/
    received_at: str
    received_at_epoch: float


class RequestRecord(TypedDict):
    """One goal request, accepted or not, as ``GET /_fake/requests`` shows it."""

    provider: str
    path: str
    status: int | None  # None: dropped (reset_next) or never answered (blackhole)
    error: str | None
    fault: str | None  # the injected fault that answered, if any
    name: str | None  # the goal name as sent
    key_hint: str | None
    received_at: str  # when the request arrived: ISO 8601, UTC, milliseconds
    received_at_epoch: float  # the same instant as time.time()


class _Rejection(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fault = fault


class _Dropped(Exception):
    """The injected reset_next fault: answer with a broken response."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, object] | None  # None: drop the connection mid-response (or hold)
    headers: dict[str, str]
    hold: bool = False  # blackhole: never answer
    trickle_bytes_per_s: float | None = None  # send the body at this pace
    pad_to: int | None = None  # pad the JSON body to this many bytes


# ---- the body rules ---------------------------------------------------------------------------


def _reject_constant(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def _parse_object(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Rejection(400, "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise _Rejection(400, "Invalid JSON body: expected an object")
    return body


def _optional_string(body: Mapping[str, object], field: str) -> str | None:
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise _Rejection(400, f"{field} must be a string")


def _visitor(rules: ProviderRules, body: Mapping[str, object]) -> str | None:
    for field in rules.visitor_fields:
        value = _optional_string(body, field)
        if value is not None:
            if rules.visitor_required and not value:
                raise _Rejection(400, f"{field} must not be empty")
            return value
    if rules.visitor_required:
        raise _Rejection(400, f"{rules.visitor_fields[0]} is required")
    return None


def _goal_name(rules: ProviderRules, value: object) -> str:
    if value is None:
        raise _Rejection(400, "name is required")
    if not isinstance(value, str):
        raise _Rejection(400, "name must be a string")
    name = value.lower().replace(" ", "_") if rules.normalise_name else value
    if not rules.name_pattern.fullmatch(name):
        raise _Rejection(
            400, f"invalid goal name {value!r}: must match ^{rules.name_pattern.pattern}$"
        )
    if name in rules.reserved_names:
        raise _Rejection(400, f"invalid goal name {value!r}: {name!r} is reserved")
    return name


def _metadata_text(value: object) -> str | None:
    """A metadata value as the providers store it, or None when its type is not allowed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # As JavaScript's String(): 2.0 -> "2".
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return value
    return None


def _sanitise(text: str) -> str:
    """Remove HTML and script content from a metadata value."""
    previous = None
    while previous != text:
        previous = text
        for pattern in _SANITISERS:
            text = pattern.sub("", text)
    return text


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Rejection(400, "invalid metadata: must be an object")
    if len(value) > METADATA_MAX_KEYS:
        raise _Rejection(
            400, f"invalid metadata: {len(value)} keys, at most {METADATA_MAX_KEYS} allowed"
        )
    stored: dict[str, str] = {}
    for key, item in value.items():
        if not METADATA_KEY.fullmatch(key):
            raise _Rejection(400, f"invalid metadata key {key!r}: must match ^[a-z0-9_-]{{1,64}}$")
        text = _metadata_text(item)
        if text is None:
            raise _Rejection(
                400, f"invalid metadata value for {key!r}: must be a string, number or boolean"
            )
        if len(text.encode("utf-16-le")) // 2 > METADATA_VALUE_MAX:
            raise _Rejection(
                400, f"invalid metadata value for {key!r}: longer than {METADATA_VALUE_MAX} chars"
            )
        stored[key] = _sanitise(text)
    return stored


# ---- responses -----------------------------------------------------------------------------------


def _error_body(rules: ProviderRules, status: int, message: str) -> dict[str, object]:
    if rules.envelope == "datafast":
        return {"status": "error", "error": {"code": status, "message": message}}
    return {"statusCode": status, "message": message, "error": HTTPStatus(status).phrase}


def _success_body(rules: ProviderRules, event_id: str | None) -> dict[str, object]:
    item: dict[str, object] = {"message": rules.success_message}
    if event_id is not None:
        item["eventId"] = event_id
    return {"status": "success", "data": [item]}


def _retry_after(seconds: float, http_date: bool) -> str:
    if http_date:
        # Rounded up so that the date is never sooner than the delay asked for.
        when = datetime.fromtimestamp(math.ceil(time.time() + seconds), timezone.utc)
        return format_datetime(when, usegmt=True)
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


_KNOWN_PREFIXES = ("flow_ws_", "flow_", "dft_", "df_")


def _key_hint(key: str) -> str:
    prefix = next((p for p in _KNOWN_PREFIXES if key.startswith(p)), "")
    rest = key[len(prefix) :]
    # Short keys get no tail: four characters of a short key give too much of it away.
    return f"{prefix}…{rest[-4:]}" if len(rest) >= 12 else f"{prefix}…"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


# ---- faults ------------------------------------------------------------------------------------


@dataclass
class _Faults:
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


ScheduleKind = Literal["down", "blackhole", "trickle"]


@dataclass(frozen=True)
class _Window:
    """One scheduled window, in wall-clock epoch seconds: ``start <= t < end``."""

    kind: ScheduleKind
    start: float
    end: float


@dataclass(frozen=True)
class _Flap:
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

    def down_windows(self, now: float) -> list[_Window]:
        """Every down phase; an endless flap's up to the first one that starts after ``now``."""
        end = self.end if self.end is not None else math.inf
        until = end if self.end is not None else now + self.period
        windows: list[_Window] = []
        cycle = 0
        while True:
            start = self.start + cycle * self.period + self.up_s
            if start >= end or start > until:
                return windows
            windows.append(_Window("down", start, min(start + self.down_s, end)))
            cycle += 1


@dataclass
class _Schedule:
    """The time-shaped faults: windows set by ``down_for`` & co., and at most one flap."""

    windows: list[_Window] = dataclasses.field(default_factory=list)
    flap: _Flap | None = None

    def active(self, kind: ScheduleKind, at: float) -> bool:
        if kind == "down" and self.flap is not None and self.flap.is_down(at):
            return True
        return any(w.kind == kind and w.start <= at < w.end for w in self.windows)

    def outages(self, now: float) -> list[_Window]:
        """The down and blackhole windows, a flap's expanded, by start time."""
        windows = [w for w in self.windows if w.kind != "trickle"]
        if self.flap is not None:
            windows += self.flap.down_windows(now)
        return sorted(windows, key=lambda w: (w.start, w.end))

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
        }


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


_FAULT_CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "latency_ms": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "fail_next": ("an integer >= 0", _is_count),
    "fail_status": ("an HTTP error status", lambda v: _is_count(v) and v in _ERROR_STATUSES),
    "rate_limit_next": ("an integer >= 0", _is_count),
    "retry_after": ("a number of seconds >= 0", lambda v: _is_number(v) and v >= 0),
    "retry_after_http_date": ("true or false", lambda v: isinstance(v, bool)),
    "reset_next": ("an integer >= 0", _is_count),
    "error_rate": ("a number from 0 to 1", lambda v: _is_number(v) and 0 <= v <= 1),
    "error_status": ("an HTTP error status", lambda v: _is_count(v) and v in _ERROR_STATUSES),
    "seed": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "down_status": ("an HTTP error status", lambda v: _is_count(v) and v in _ERROR_STATUSES),
    "trickle_bytes_per_s": ("a number > 0", _is_duration),
    "huge_body_next": ("an integer >= 0", _is_count),
    "huge_body_bytes": ("an integer >= 0", _is_count),
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
}
# Fields that add to the schedule instead of changing a setting.
_SCHEDULE_FIELDS = frozenset(
    {"down_for", "down_between", "flap", "flap_for", "blackhole_for", "trickle_for"}
)


def _check_faults(fields: Mapping[str, object]) -> None:
    for name, value in fields.items():
        if name not in _FAULT_CHECKS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(_FAULT_CHECKS)}")
        description, valid = _FAULT_CHECKS[name]
        if not valid(value):
            raise ValueError(f"fault {name} must be {description}, not {value!r}")
    if "flap_for" in fields and "flap" not in fields:
        raise ValueError("fault flap_for needs flap=[up_s, down_s] in the same call")


def _add_to_schedule(schedule: _Schedule, fields: Mapping[str, object], now: float) -> None:
    """Add the windows that checked ``fields`` ask for, counted from ``now``."""
    for kind in ("down", "blackhole", "trickle"):
        length = fields.get(f"{kind}_for")
        if _is_number(length):
            schedule.windows.append(_Window(kind, now, now + length))
    between = fields.get("down_between")
    if _is_pair(between):
        schedule.windows.append(_Window("down", now + between[0], now + between[1]))
    flap = fields.get("flap")
    if _is_pair(flap):
        flap_for = fields.get("flap_for")
        end = now + flap_for if _is_number(flap_for) else None
        schedule.flap = _Flap(now, float(flap[0]), float(flap[1]), end)


# ---- the state ---------------------------------------------------------------------------------


class FakeAPIState:
    """Everything the fake API remembers; thread-safe, since the server runs in its own thread.

    ``default_provider`` answers the bare ``/api/v1/goals`` path. ``flowsery_rate_limit`` is the
    number of Flowsery requests allowed per token per 60 s window (None: unlimited).
    ``flowsery_created_status`` is Flowsery's success status, 200 or 201.
    """

    def __init__(
        self,
        default_provider: str = "datafast",
        flowsery_rate_limit: int | None = 600,
        flowsery_created_status: int = 200,
    ) -> None:
        _check_provider(default_provider)
        if flowsery_created_status not in (200, 201):
            raise ValueError("flowsery_created_status must be 200 or 201")
        if flowsery_rate_limit is not None and flowsery_rate_limit < 1:
            raise ValueError("flowsery_rate_limit must be a positive integer or None")
        self.default_provider = default_provider
        self.flowsery_rate_limit = flowsery_rate_limit
        self.flowsery_created_status = flowsery_created_status
        self._cond = threading.Condition(threading.RLock())
        self._goals: list[GoalRecord] = []
        self._requests: list[RequestRecord] = []
        self._pageviews: list[PageviewRecord] = []
        self._visitors: dict[str, dict[str, bool]] = {p: {} for p in PROVIDERS}  # id -> is bot
        self._revoked: set[str] = set()
        self._no_goals_write: set[str] = set()
        self._suspended: set[str] = set()
        self._windows: dict[str, tuple[float, int]] = {}  # token -> (window end, requests)
        self._faults = _Faults()
        self._schedule = _Schedule()
        self._random = random.Random(self._faults.seed)

    # -- inspection

    @property
    def goals(self) -> list[GoalRecord]:
        """The accepted goals in arrival order (a copy)."""
        with self._cond:
            return copy.deepcopy(self._goals)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every goal request seen, accepted or rejected, in arrival order (a copy)."""
        with self._cond:
            return copy.deepcopy(self._requests)

    @property
    def pageviews(self) -> list[PageviewRecord]:
        """Every pageview registered, by the tracking script or the control API (a copy)."""
        with self._cond:
            return copy.deepcopy(self._pageviews)

    def wait_for_pageviews(self, count: int, timeout: float = 10.0) -> list[PageviewRecord]:
        """Block until at least ``count`` pageviews were registered; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._pageviews) >= count, timeout):
                raise TimeoutError(
                    f"fake API: waited {timeout:g}s for {count} pageview(s),"
                    f" got {len(self._pageviews)}"
                )
            return copy.deepcopy(self._pageviews)

    @property
    def faults(self) -> dict[str, object]:
        """The current fault settings and schedule (see :meth:`set_faults`).

        Besides the settings: ``outages``, the down and blackhole windows as
        ``{"kind", "start", "end"}`` in epoch seconds (``start <= t < end``), by start, a flap
        expanded into its down phases (an endless one up to the first that starts after now);
        ``trickles``, the trickle windows as ``{"start", "end"}``; ``flap``, None or
        ``{"start", "up_s", "down_s", "end"}`` (``end`` None: until cleared).
        """
        with self._cond:
            return self._fault_report()

    def outage_windows(self) -> list[tuple[float, float]]:
        """When the API is, was or will be down or blackholed: ``(start, end)`` epoch seconds.

        Sorted, with overlapping or touching windows merged, so that each ``end`` is a moment
        the API is back. An endless flap is expanded up to the first down phase starting after
        now. Compare with ``received_at_epoch`` of :attr:`requests` and :attr:`goals`.
        """
        with self._cond:
            windows = self._schedule.outages(time.time())
        merged: list[tuple[float, float]] = []
        for window in windows:
            if merged and window.start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], window.end))
            else:
                merged.append((window.start, window.end))
        return merged

    def wait_for_goals(self, count: int, timeout: float = 10.0) -> list[GoalRecord]:
        """Block until at least ``count`` goals were accepted; return them all.

        Raises TimeoutError, naming the latest rejections, if they do not arrive in time.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._goals) >= count, timeout):
                raise TimeoutError(self._shortfall("goal", count, len(self._goals), timeout))
            return copy.deepcopy(self._goals)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RequestRecord]:
        """Block until at least ``count`` goal requests were answered; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(self._shortfall("request", count, len(self._requests), timeout))
            return copy.deepcopy(self._requests)

    def _shortfall(self, what: str, wanted: int, got: int, timeout: float) -> str:
        rejected = [r for r in self._requests if r["status"] != 200 and r["status"] != 201]
        recent = "; ".join(f"{r['provider']} {r['status']}: {r['error']}" for r in rejected[-5:])
        return (
            f"fake API: waited {timeout:g}s for {wanted} {what}(s), got {got}"
            f" ({len(self._requests)} goal request(s) seen"
            + (f"; latest rejections: {recent})" if recent else ")")
        )

    # -- scenario set-up

    def add_pageview(
        self,
        provider: str,
        visitor_id: str | None = None,
        *,
        bot: bool = False,
        session_id: str | None = None,
        url: str | None = None,
        source: Literal["script", "control"] = "control",
    ) -> str:
        """Register a pageview by a visitor (a fresh UUID v4 if none given); return its id.

        The visitor then counts as seen by ``provider`` whatever the key or website.
        A visitor once marked as a bot stays one.
        """
        _check_provider(provider)
        visitor = visitor_id if visitor_id is not None else str(uuid.uuid4())
        received = time.time()
        with self._cond:
            visitors = self._visitors[provider]
            visitors[visitor] = visitors.get(visitor, False) or bot
            self._pageviews.append(
                PageviewRecord(
                    provider=provider,
                    visitor_id=visitor,
                    session_id=session_id,
                    url=url,
                    source=source,
                    received_at=_iso(received),
                    received_at_epoch=received,
                )
            )
            self._cond.notify_all()
        return visitor

    def revoke_key(self, key: str) -> None:
        """Requests with this key get 401."""
        with self._cond:
            self._revoked.add(key)

    def deny_goals_write(self, key: str) -> None:
        """Requests with this key (typically a ``dft_`` token) get 403, missing goals:write."""
        with self._cond:
            self._no_goals_write.add(key)

    def suspend(self, key_or_website_id: str) -> None:
        """Suspend tracking for a website: its goal requests get 403.

        A website is named by ``?websiteId=`` (or Flowsery's ``?domain=``) for the tokens that
        need one (``dft_``, ``flow_ws_``), and by the key itself for every other key.
        """
        with self._cond:
            self._suspended.add(key_or_website_id)

    def set_faults(self, **fields: object) -> dict[str, object]:
        """Merge fault settings into the current ones, add to the schedule; return them all.

        Counted in requests: ``latency_ms``: delay before answering each goal request.
        ``fail_next`` (with ``fail_status``, default 503), ``rate_limit_next`` (429 with
        ``retry_after`` seconds, sent as an HTTP date if ``retry_after_http_date``) and
        ``reset_next`` (connection dropped mid-response): the next N goal requests fail that
        way and store nothing. ``error_rate`` (0..1, with ``error_status``, default 500):
        random failures from a ``random.Random(seed)``; setting ``seed`` restarts that
        sequence. ``huge_body_next``: the next N successful answers carry a body padded to
        ``huge_body_bytes`` (default 50,000,000), streamed.

        Shaped in time, from this call on (each adds a window; they accumulate until cleared):
        ``down_for=s``: every goal request is answered ``down_status`` (default 503) for s
        seconds. ``down_between=(t0, t1)``: down from t0 to t1 seconds from now.
        ``flap=(up_s, down_s)``: up for up_s, down for down_s, repeated, for ``flap_for``
        seconds if given, else until cleared (a new flap replaces the previous one).
        ``blackhole_for=s``: requests arriving in the next s seconds are read and never
        answered; they are held until the client disconnects (at most
        ``BLACKHOLE_HOLD_MAX_S``), even after the window ends. ``trickle_for=s``: answers to
        requests arriving in the next s seconds send their body one byte at a time,
        ``trickle_bytes_per_s`` (default 1) bytes a second, after the status and headers.

        Precedence, for one request: blackhole, down, then the count faults (``reset_next``,
        ``fail_next``, ``rate_limit_next``, ``error_rate``), then the provider's rules; a
        request answered by the schedule uses up no count fault. Trickling slows whatever
        answer the request gets. A request's ``fault`` names the first that applied, in the
        order blackhole, down, trickle, reset_next, fail_next, rate_limit_next, error_rate,
        huge_body_next.
        """
        _check_faults(fields)
        now = time.time()
        with self._cond:
            for name, value in fields.items():
                if name not in _SCHEDULE_FIELDS:
                    setattr(self._faults, name, value)
            _add_to_schedule(self._schedule, fields, now)
            if "seed" in fields:
                self._random = random.Random(self._faults.seed)
            return self._fault_report()

    def clear_faults(self) -> None:
        """Back to a well-behaved API: settings to their defaults, the schedule emptied.

        Requests held by a blackhole stay held: a hung server does not recover its requests.
        """
        with self._cond:
            self._faults = _Faults()
            self._schedule = _Schedule()
            self._random = random.Random(self._faults.seed)

    def _fault_report(self) -> dict[str, object]:
        return {**dataclasses.asdict(self._faults), **self._schedule.report(time.time())}

    def reset(self) -> None:
        """Forget goals, requests, pageviews, key marks, rate-limit windows and faults."""
        with self._cond:
            self._goals.clear()
            self._requests.clear()
            self._pageviews.clear()
            for visitors in self._visitors.values():
                visitors.clear()
            self._revoked.clear()
            self._no_goals_write.clear()
            self._suspended.clear()
            self._windows.clear()
            self.clear_faults()
            self._cond.notify_all()

    # -- handling one goal request

    def _latency_seconds(self) -> float:
        with self._cond:
            return self._faults.latency_ms / 1000

    def _handle_goal(
        self,
        provider: str,
        path: str,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> _Answer:
        """Apply faults, then the provider's rules, to one goal request; record the outcome.

        ``arrived`` (epoch seconds) is when the request came in: the schedule is read then.
        """
        rules = PROVIDERS[provider]
        with self._cond:
            record = RequestRecord(
                provider=provider,
                path=path,
                status=None,
                error=None,
                fault=None,
                name=None,
                key_hint=None,
                received_at=_iso(arrived),
                received_at_epoch=arrived,
            )
            if self._schedule.active("blackhole", arrived):
                record["error"] = "never answered (injected blackhole)"
                record["fault"] = "blackhole"
                self._record(record)
                return _Answer(0, None, {}, hold=True)
            trickle = (
                self._faults.trickle_bytes_per_s
                if self._schedule.active("trickle", arrived)
                else None
            )
            answer = self._answer_goal(rules, record, authorization, query, raw_body, arrived)
            if trickle is not None:
                record["fault"] = "down" if record["fault"] == "down" else "trickle"
                answer = dataclasses.replace(answer, trickle_bytes_per_s=trickle)
            self._record(record)
            return answer

    def _answer_goal(
        self,
        rules: ProviderRules,
        record: RequestRecord,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> _Answer:
        """The answer to one goal request outside a blackhole; fills in ``record``."""
        headers: dict[str, str] = {}
        try:
            if self._schedule.active("down", arrived):
                raise _Rejection(self._faults.down_status, "injected outage", fault="down")
            self._inject_faults()
            key, website_id = self._authenticate(rules, authorization, query)
            record["key_hint"] = key_hint = _key_hint(key)
            headers = self._count_rate_limit(rules, key)
            body = _parse_object(raw_body)
            sent_name = body.get("name")
            record["name"] = sent_name if isinstance(sent_name, str) else None
            goal = self._goal(rules, body, website_id, key_hint, arrived)
        except _Dropped:
            record["error"] = "connection dropped (injected reset_next)"
            record["fault"] = "reset_next"
            return _Answer(200, None, {})
        except _Rejection as rejection:
            record["status"] = rejection.status
            record["error"] = rejection.message
            record["fault"] = rejection.fault
            body_out = _error_body(rules, rejection.status, rejection.message)
            return _Answer(rejection.status, body_out, {**headers, **rejection.headers})
        status = self.flowsery_created_status if rules.created_status_configurable else 200
        record["status"] = status
        self._goals.append(goal)
        pad_to = None
        if self._faults.huge_body_next:
            self._faults.huge_body_next -= 1
            record["fault"] = "huge_body_next"
            pad_to = self._faults.huge_body_bytes
        return _Answer(status, _success_body(rules, goal["event_id"]), headers, pad_to=pad_to)

    def _record(self, record: RequestRecord) -> None:
        self._requests.append(record)
        self._cond.notify_all()

    def _inject_faults(self) -> None:
        """Raise the injected fault for this request, if any; earlier kinds take precedence."""
        faults = self._faults
        if faults.reset_next:
            faults.reset_next -= 1
            raise _Dropped
        if faults.fail_next:
            faults.fail_next -= 1
            raise _Rejection(faults.fail_status, "injected failure", fault="fail_next")
        if faults.rate_limit_next:
            faults.rate_limit_next -= 1
            retry_after = _retry_after(faults.retry_after, faults.retry_after_http_date)
            headers = {"Retry-After": retry_after}
            raise _Rejection(429, "Too many requests", headers, fault="rate_limit_next")
        if faults.error_rate and self._random.random() < faults.error_rate:
            raise _Rejection(faults.error_status, "injected random failure", fault="error_rate")

    def _authenticate(
        self, rules: ProviderRules, authorization: str | None, query: Mapping[str, str]
    ) -> tuple[str, str | None]:
        """Return (key, website id named in the query) or raise the 400/401/403 rejection."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _Rejection(401, "Missing or invalid Authorization header (expected Bearer <key>)")
        if rules.key_prefixes and not key.startswith(rules.key_prefixes):
            raise _Rejection(401, f"Invalid API key: expected {' or '.join(rules.key_prefixes)}…")
        if key in self._revoked:
            raise _Rejection(401, "Invalid API key: revoked")
        website_id = None
        if rules.scoped_prefix is not None and key.startswith(rules.scoped_prefix):
            website_id = next((query[p] for p in rules.scope_params if query.get(p)), None)
            if website_id is None:
                wanted = " or ".join(rules.scope_params)
                raise _Rejection(400, f"{wanted} is required with a {rules.scoped_prefix} token")
        if key in self._no_goals_write:
            raise _Rejection(403, "Missing permission: goals:write")
        if (website_id or key) in self._suspended:
            raise _Rejection(403, "Tracking suspended for this website")
        return key, website_id

    def _count_rate_limit(self, rules: ProviderRules, key: str) -> dict[str, str]:
        """Count this request in the token's window; return the RateLimit headers, or raise 429."""
        limit = self.flowsery_rate_limit
        if not rules.rate_limited or limit is None:
            return {}
        now = time.monotonic()
        window_end, used = self._windows.get(key, (0.0, 0))
        if now >= window_end:
            window_end, used = now + RATE_LIMIT_WINDOW_S, 0
        used += 1
        self._windows[key] = (window_end, used)
        reset = str(max(1, math.ceil(window_end - now)))
        headers = {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(0, limit - used)),
            "RateLimit-Reset": reset,
        }
        if used > limit:
            raise _Rejection(429, "Too many requests", {**headers, "Retry-After": reset})
        return headers

    def _goal(
        self,
        rules: ProviderRules,
        body: Mapping[str, object],
        website_id: str | None,
        key_hint: str,
        received_at: float,
    ) -> GoalRecord:
        """Validate the body against the provider's rules; return the goal to store."""
        visitor = _visitor(rules, body)
        session = _optional_string(body, rules.session_field) if rules.session_field else None
        name = _goal_name(rules, body.get("name"))
        texts = {field: _optional_string(body, field) for field in rules.text_fields}
        metadata = _metadata(body.get("metadata"))
        if rules.needs_pageview and visitor is not None:
            is_bot = self._visitors[rules.name].get(visitor)
            if is_bot is None:
                raise _Rejection(404, "visitor has no pageviews on this website")
            if is_bot:
                raise _Rejection(400, "visitor is a bot")
        return GoalRecord(
            provider=rules.name,
            name=name,
            visitor_id=visitor,
            session_id=session,
            metadata=metadata,
            description=texts.get("description"),
            timezone=texts.get("timezone"),
            event_id=_object_id() if rules.returns_event_id else None,
            website_id=website_id,
            key_hint=key_hint,
            received_at=_iso(received_at),
            received_at_epoch=received_at,
        )


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")


def _object_id() -> str:
    """A fresh MongoDB-ObjectId-like id: 4 bytes of time, then 8 random bytes, as 24 hex."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{uuid.uuid4().hex[:16]}"


# ---- the tracking script -------------------------------------------------------------------------

SCRIPT_PATH = "/js/script.js"
EVENTS_PATH = "/api/events"
VISITOR_COOKIE_MAX_AGE_S = 365 * 24 * 3600
SESSION_COOKIE_MAX_AGE_S = 30 * 60
_SCRIPT_ID_MAX = 128


@dataclass(frozen=True)
class _ScriptCookies:
    visitor: str
    session: str
    uuid_ids: (
        bool  # visitor id a UUID v4 and session id "s" + UUID (DataFast); else url-safe tokens
    )


_SCRIPT_COOKIES = {
    "datafast": _ScriptCookies("datafast_visitor_id", "datafast_session_id", uuid_ids=True),
    "faurya": _ScriptCookies("faurya_visitor_id", "faurya_session_id", uuid_ids=True),
    "flowsery": _ScriptCookies("_fs_vid", "_fs_sid", uuid_ids=False),
}

_SCRIPT_TEMPLATE = """\
/* goaltrack fake API: a stand-in for the analytics provider's tracking script. */
(function () {
  "use strict";
  var config = %(config)s;
  function readCookie(name) {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("=");
      if (pairs[i].slice(0, at) === name) return pairs[i].slice(at + 1);
    }
    return null;
  }
  function writeCookie(name, value, maxAge) {
    document.cookie = name + "=" + value + "; path=/; max-age=" + maxAge + "; SameSite=Lax";
  }
  function uuid4() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
      hex.slice(20)].join("-");
  }
  function token() { return uuid4().replace(/-/g, ""); }
  var visitorId = readCookie(config.visitorCookie) || (config.uuidIds ? uuid4() : token());
  var sessionId = readCookie(config.sessionCookie) || (config.uuidIds ? "s" + uuid4() : token());
  writeCookie(config.visitorCookie, visitorId, config.visitorMaxAge);
  writeCookie(config.sessionCookie, sessionId, config.sessionMaxAge);
  var root = document.documentElement;
  fetch(config.eventsUrl, {
    method: "POST",
    mode: "cors",
    keepalive: true,
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: "pageview", visitorId: visitorId, sessionId: sessionId,
      url: location.href})
  }).then(function (response) {
    root.setAttribute("data-goaltrack-pageview", response.ok ? "recorded" : "refused");
  }, function () {
    root.setAttribute("data-goaltrack-pageview", "failed");
  });
})();
"""


def tracking_script(provider: str, events_url: str) -> str:
    """The JavaScript ``GET /<provider>/js/script.js`` serves, posting pageviews to events_url."""
    _check_provider(provider)
    cookies = _SCRIPT_COOKIES[provider]
    config = {
        "visitorCookie": cookies.visitor,
        "sessionCookie": cookies.session,
        "uuidIds": cookies.uuid_ids,
        "visitorMaxAge": VISITOR_COOKIE_MAX_AGE_S,
        "sessionMaxAge": SESSION_COOKIE_MAX_AGE_S,
        "eventsUrl": events_url,
    }
    # "</" escaped: the config must not be able to end a <script> element it is inlined in.
    return _SCRIPT_TEMPLATE % {"config": json.dumps(config).replace("</", "<\\/")}


def _script_id(value: object, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _SCRIPT_ID_MAX:
        raise _ControlError(f"{field} must be a string of 1 to {_SCRIPT_ID_MAX} characters")
    return value


def _cors_headers(request: Request) -> dict[str, str]:
    # Any page may load the script and report its pageview, as with the real providers.
    return {
        "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


# ---- the app -----------------------------------------------------------------------------------


async def _drop(send: Send) -> None:
    """Announce a body and never send it: uvicorn then closes the connection mid-response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"128")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


class _DroppedResponse(Response):
    """The reset_next fault: a broken response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _drop(send)


async def _until_disconnected(receive: Receive) -> None:
    # Once the request body is read, uvicorn's receive() returns only when the client is gone.
    while (await receive())["type"] != "http.disconnect":
        pass


class _HeldResponse(Response):
    """The blackhole: no answer, until the client disconnects or the server stops."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_until_disconnected(receive))
        deadline = time.monotonic() + BLACKHOLE_HOLD_MAX_S
        try:
            while not gone.done():
                if self.stopping.is_set() or time.monotonic() >= deadline:
                    # A hung server that goes away: the connection closes without an answer.
                    await _drop(send)
                    return
                await asyncio.wait({gone}, timeout=_HOLD_POLL_S)
        finally:
            gone.cancel()


class _ShapedResponse(Response):
    """A JSON answer padded to a size and/or sent one byte at a time."""

    def __init__(self, answer: _Answer, stopping: threading.Event) -> None:
        body = answer.body if answer.body is not None else {}
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.prefix, self.padding, self.suffix = content, 0, b""
        if answer.pad_to is not None and answer.pad_to > len(content) + len(_PAD_OPEN) + 1:
            # {"status":...,"padding":"xxx…"}: still the provider's JSON, just long.
            self.prefix = content[:-1] + _PAD_OPEN
            self.suffix = b'"}'
            self.padding = answer.pad_to - len(self.prefix) - len(self.suffix)
        self.length = len(self.prefix) + self.padding + len(self.suffix)
        self.status_code = answer.status
        self.answer_headers = answer.headers
        self.rate = answer.trickle_bytes_per_s
        self.stopping = stopping

    def _chunks(self) -> Iterator[bytes]:
        yield self.prefix
        left = self.padding
        while left > 0:
            size = min(left, len(_PAD_CHUNK))
            yield _PAD_CHUNK[:size]
            left -= size
        yield self.suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(self.length).encode()),
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in self.answer_headers.items()
            ),
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        gone = asyncio.ensure_future(_until_disconnected(receive))
        try:
            chunks = self._chunks() if self.rate is None else _bytes(self._chunks())
            started, sent = time.monotonic(), 0
            for chunk in chunks:
                if self.rate is not None:
                    sent += len(chunk)
                    await asyncio.sleep(max(0.0, started + sent / self.rate - time.monotonic()))
                if gone.done() or self.stopping.is_set():
                    return  # the client left, or the server stops: the body stays short
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


def _bytes(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for index in range(len(chunk)):
            yield chunk[index : index + 1]


class _ControlError(Exception):
    pass


async def _control_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return _parse_object(raw)
    except _Rejection as exc:
        raise _ControlError(exc.message) from exc


def _string_list(body: Mapping[str, object], field: str) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _ControlError(f"{field} must be a list of strings")
    return value


class _Endpoints:
    def __init__(self, state: FakeAPIState, stopping: threading.Event) -> None:
        self.state = state
        self.stopping = stopping

    def routes(self) -> list[Route]:
        goal_routes = [
            Route(prefix + path, self._goal_endpoint(path), methods=["POST"])
            # The bare paths come first: "/analytics/api/v1/goals" would match "/{provider}/...".
            for prefix in ("", "/{provider}")
            for path in (GOALS_PATH, CLI_GOALS_PATH)
        ]
        script_routes = [
            route
            for prefix in ("", "/{provider}")
            for route in (
                Route(prefix + SCRIPT_PATH, self.script, methods=["GET"]),
                Route(prefix + EVENTS_PATH, self.events, methods=["POST", "OPTIONS"]),
            )
        ]
        return [
            *goal_routes,
            *script_routes,
            Route("/_fake/", self.index, methods=["GET"]),
            Route("/_fake/goals", self.goals, methods=["GET"]),
            Route("/_fake/requests", self.requests, methods=["GET"]),
            Route("/_fake/pageviews", self.pageviews, methods=["POST"]),
            Route("/_fake/faults", self.faults, methods=["GET", "POST"]),
            Route("/_fake/keys", self.keys, methods=["POST"]),
            Route("/_fake/reset", self.reset, methods=["POST"]),
        ]

    def _goal_endpoint(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        async def goal(request: Request) -> Response:
            arrived = time.time()
            provider = request.path_params.get("provider", self.state.default_provider)
            rules = PROVIDERS.get(provider)
            if rules is None or path not in rules.goal_paths:
                return JSONResponse({"error": f"no such endpoint for {provider!r}"}, 404)
            raw = await request.body()
            latency = self.state._latency_seconds()
            if latency:
                await asyncio.sleep(latency)
            answer = self.state._handle_goal(
                provider,
                request.url.path,
                request.headers.get("authorization"),
                request.query_params,
                raw,
                arrived,
            )
            if answer.hold:
                return _HeldResponse(self.stopping)
            if answer.body is None:
                return _DroppedResponse()
            if answer.trickle_bytes_per_s is not None or answer.pad_to is not None:
                return _ShapedResponse(answer, self.stopping)
            return JSONResponse(answer.body, answer.status, headers=answer.headers)

        return goal

    async def script(self, request: Request) -> Response:
        provider = request.path_params.get("provider", self.state.default_provider)
        if provider not in PROVIDERS:
            return JSONResponse({"error": f"no such provider {provider!r}"}, 404)
        prefix = f"/{provider}" if "provider" in request.path_params else ""
        events_url = str(request.base_url).rstrip("/") + prefix + EVENTS_PATH
        return Response(
            tracking_script(provider, events_url),
            media_type="text/javascript",
            headers={"Cache-Control": "no-store"},
        )

    async def events(self, request: Request) -> Response:
        cors = _cors_headers(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=cors)
        provider = request.path_params.get("provider", self.state.default_provider)
        if provider not in PROVIDERS:
            return JSONResponse({"error": f"no such provider {provider!r}"}, 404, headers=cors)
        try:
            body = await _control_body(request)
            if body.get("type") != "pageview":
                raise _ControlError("type must be 'pageview'")
            visitor_id = _script_id(body.get("visitorId"), "visitorId")
            session_id = _script_id(body.get("sessionId"), "sessionId")
            url = body.get("url")
            if url is not None and not isinstance(url, str):
                raise _ControlError("url must be a string")
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=cors)
        self.state.add_pageview(
            provider, visitor_id, session_id=session_id, url=url, source="script"
        )
        return JSONResponse({"status": "success"}, headers=cors)

    async def goals(self, request: Request) -> Response:
        return JSONResponse(self.state.goals)

    async def requests(self, request: Request) -> Response:
        return JSONResponse(self.state.requests)

    async def pageviews(self, request: Request) -> Response:
        try:
            body = await _control_body(request)
            provider = body.get("provider", self.state.default_provider)
            visitor_id = body.get("visitor_id")
            bot = body.get("bot", False)
            if not isinstance(provider, str) or provider not in PROVIDERS:
                raise _ControlError(f"provider must be one of {', '.join(PROVIDERS)}")
            if visitor_id is not None and not isinstance(visitor_id, str):
                raise _ControlError("visitor_id must be a string")
            if not isinstance(bot, bool):
                raise _ControlError("bot must be true or false")
            # "website" is accepted for readable scenarios; visitors are registered per provider.
            if not isinstance(body.get("website", ""), str):
                raise _ControlError("website must be a string")
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        visitor = self.state.add_pageview(provider, visitor_id, bot=bot)
        return JSONResponse({"visitor_id": visitor, "provider": provider, "bot": bot})

    async def faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await _control_body(request)
            except _ControlError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            fields = {name: value for name, value in body.items() if name != "clear"}
            if not isinstance(body.get("clear", False), bool):
                return JSONResponse({"error": "clear must be true or false"}, 400)
            try:
                # Checked before clearing, so that a bad request changes nothing.
                _check_faults(fields)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            if body.get("clear") is True:
                self.state.clear_faults()
            self.state.set_faults(**fields)
        return JSONResponse(self.state.faults)

    async def keys(self, request: Request) -> Response:
        try:
            body = await _control_body(request)
            unknown = set(body) - {"revoke", "no_goals_write", "suspend"}
            if unknown:
                raise _ControlError(f"unknown fields: {', '.join(sorted(unknown))}")
            marks = {
                field: _string_list(body, field)
                for field in ("revoke", "no_goals_write", "suspend")
            }
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        for key in marks["revoke"]:
            self.state.revoke_key(key)
        for key in marks["no_goals_write"]:
            self.state.deny_goals_write(key)
        for key in marks["suspend"]:
            self.state.suspend(key)
        return JSONResponse({field: len(keys) for field, keys in marks.items()})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return JSONResponse({"status": "reset"})

    async def index(self, request: Request) -> Response:
        goals = self.state.goals
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    goal["received_at"],
                    goal["provider"],
                    goal["name"],
                    goal["visitor_id"] or "",
                    json.dumps(goal["metadata"], ensure_ascii=False),
                )
            )
            + "</tr>"
            for goal in goals
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>goaltrack fake API</title>"
            "</head><body><h1>goaltrack fake API</h1>"
            f"<p>{len(goals)} goal(s) received; {len(self.state.requests)} goal request(s) seen."
            " JSON: <a href='/_fake/goals'>goals</a>, <a href='/_fake/requests'>requests</a>.</p>"
            "<table><tr><th>received</th><th>provider</th><th>name</th><th>visitor</th>"
            f"<th>metadata</th></tr>{rows}</table></body></html>"
        )
        return HTMLResponse(page)


def create_app(state: FakeAPIState | None = None) -> Starlette:
    """The fake API as an ASGI app; its state is ``app.state.fake_api``.

    ``app.state.fake_api_stopping`` is a :class:`threading.Event`: set it before stopping the
    server that runs the app, and the requests a blackhole holds close their connections (and
    trickling answers stop) instead of keeping the server's shutdown waiting.
    """
    state = state if state is not None else FakeAPIState()
    stopping = threading.Event()
    app = Starlette(routes=_Endpoints(state, stopping).routes())
    app.state.fake_api = state
    app.state.fake_api_stopping = stopping
    return app
