"""What the fake API remembers, and how it answers one goal request.

This module owns :class:`FakeAPIState` (goals, requests, pageviews, key marks, Flowsery's
rate-limit windows, the faults; thread-safe, since the server runs in its own thread), the
records it keeps (:class:`GoalRecord`, :class:`PageviewRecord`, :class:`RequestRecord`) and the
order of checks for one goal request (``FakeAPIState._handle_goal``): the fault schedule, the
count faults, auth, Flowsery's rate limit, the body, the pageview. The body rules are in
:mod:`.rules`, the faults in :mod:`.faults`, the HTTP side in :mod:`.app`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, TypedDict, TypeVar

from goaltrack.testing.fake_api.faults import Dropped, Faults
from goaltrack.testing.fake_api.rules import (
    PROVIDERS,
    RATE_LIMIT_WINDOW_S,
    ProviderRules,
    Rejection,
    check_goal_body,
    check_provider,
    error_body,
    key_hint,
    object_id,
    parse_object,
    success_body,
)

__all__ = ["Answer", "FakeAPIState", "GoalRecord", "PageviewRecord", "RequestRecord"]

R = TypeVar("R")


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
    headers: dict[str, str]  # the script's event request's headers (lower-case names); {} else
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


@dataclass(frozen=True)
class Answer:
    """How the app is to answer one goal request."""

    status: int
    body: dict[str, object] | None  # None: drop the connection mid-response (or hold)
    headers: dict[str, str]
    hold: bool = False  # blackhole: never answer
    trickle_bytes_per_s: float | None = None  # send the body at this pace
    pad_to: int | None = None  # pad the JSON body to this many bytes


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


class FakeAPIState:
    """Everything the fake API remembers; thread-safe, since the server runs in its own thread.

    ``default_provider`` answers the bare ``/api/v1/goals`` path. ``flowsery_rate_limit`` is the
    number of Flowsery requests allowed per token per 60 s window (None: unlimited).
    ``flowsery_created_status`` is Flowsery's success status, 200 or 201.
    ``require_pageview=False`` accepts DataFast and Faurya goals from visitors never seen (for
    quick manual trials; a visitor registered as a bot is still refused); by default they get
    404, as from the providers.
    """

    def __init__(
        self,
        default_provider: str = "datafast",
        flowsery_rate_limit: int | None = 600,
        flowsery_created_status: int = 200,
        require_pageview: bool = True,
    ) -> None:
        check_provider(default_provider)
        if flowsery_created_status not in (200, 201):
            raise ValueError("flowsery_created_status must be 200 or 201")
        if flowsery_rate_limit is not None and flowsery_rate_limit < 1:
            raise ValueError("flowsery_rate_limit must be a positive integer or None")
        self.default_provider = default_provider
        self.flowsery_rate_limit = flowsery_rate_limit
        self.flowsery_created_status = flowsery_created_status
        self.require_pageview = require_pageview
        self._cond = threading.Condition(threading.RLock())
        self._goals: list[GoalRecord] = []
        self._requests: list[RequestRecord] = []
        self._pageviews: list[PageviewRecord] = []
        self._visitors: dict[str, dict[str, bool]] = {p: {} for p in PROVIDERS}  # id -> is bot
        self._revoked: set[str] = set()
        self._no_goals_write: set[str] = set()
        self._suspended: set[str] = set()
        self._windows: dict[str, tuple[float, int]] = {}  # token -> (window end, requests)
        self._faults = Faults()

    # -- inspection

    @property
    def goals(self) -> list[GoalRecord]:
        """The accepted goals in arrival order (a copy)."""
        return self._copy(self._goals)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every goal request seen, accepted or rejected, in arrival order (a copy)."""
        return self._copy(self._requests)

    @property
    def pageviews(self) -> list[PageviewRecord]:
        """Every pageview registered, by the tracking script or the control API (a copy)."""
        return self._copy(self._pageviews)

    def wait_for_pageviews(self, count: int, timeout: float = 10.0) -> list[PageviewRecord]:
        """Block until at least ``count`` pageviews were registered; return them all."""
        return self._wait_for(
            self._pageviews,
            count,
            timeout,
            lambda got: f"fake API: waited {timeout:g}s for {count} pageview(s), got {got}",
        )

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
            return self._faults.report(time.time())

    def outage_windows(self) -> list[tuple[float, float]]:
        """When the API is, was or will be down or blackholed: ``(start, end)`` epoch seconds.

        Sorted, with overlapping or touching windows merged, so that each ``end`` is a moment
        the API is back. An endless flap is expanded up to the first down phase starting after
        now. Compare with ``received_at_epoch`` of :attr:`requests` and :attr:`goals`.
        """
        with self._cond:
            windows = self._faults.schedule.outages(time.time())
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
        return self._wait_for(
            self._goals, count, timeout, lambda got: self._shortfall("goal", count, got, timeout)
        )

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RequestRecord]:
        """Block until at least ``count`` goal requests were answered; return them all."""
        return self._wait_for(
            self._requests,
            count,
            timeout,
            lambda got: self._shortfall("request", count, got, timeout),
        )

    def _copy(self, records: list[R]) -> list[R]:
        with self._cond:
            return copy.deepcopy(records)

    def _wait_for(
        self, records: list[R], count: int, timeout: float, shortfall: Callable[[int], str]
    ) -> list[R]:
        """Block until *records* holds at least *count*; return a copy of them all. Past
        *timeout*, raise TimeoutError with ``shortfall(how many came)``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(records) >= count, timeout):
                raise TimeoutError(shortfall(len(records)))
            return copy.deepcopy(records)

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
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Register a pageview by a visitor (a fresh UUID v4 if none given); return its id.

        The visitor then counts as seen by ``provider`` whatever the key or website.
        A visitor once marked as a bot stays one.
        """
        check_provider(provider)
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
                    headers=dict(headers or {}),
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
        ``huge_body_bytes`` (default 50,000,000), streamed. ``fail_names``: goals with these
        names are answered ``fail_status`` every time (a goal-specific 5xx).

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
        now = time.time()
        with self._cond:
            self._faults.update(fields, now)
            return self._faults.report(now)

    def clear_faults(self) -> None:
        """Back to a well-behaved API: settings to their defaults, the schedule emptied.

        Requests held by a blackhole stay held: a hung server does not recover its requests.
        """
        with self._cond:
            self._faults = Faults()

    def reset(self, *, keep_pageviews: bool = False) -> None:
        """Forget goals, requests, pageviews, key marks, rate-limit windows and faults.

        ``keep_pageviews=True`` keeps the pageviews, so the visitors seen stay known.
        """
        with self._cond:
            self._goals.clear()
            self._requests.clear()
            if not keep_pageviews:
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
            return self._faults.latency_seconds

    def _handle_goal(
        self,
        provider: str,
        path: str,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> Answer:
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
            if self._faults.blackholed(arrived):
                record["error"] = "never answered (injected blackhole)"
                record["fault"] = "blackhole"
                self._record(record)
                return Answer(0, None, {}, hold=True)
            trickle = self._faults.trickle_rate(arrived)
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
    ) -> Answer:
        """The answer to one goal request outside a blackhole; fills in ``record``."""
        headers: dict[str, str] = {}
        try:
            self._faults.inject(arrived)
            key, website_id = self._authenticate(rules, authorization, query)
            record["key_hint"] = hint = key_hint(key)
            headers = self._count_rate_limit(rules, key)
            body = parse_object(raw_body)
            sent_name = body.get("name")
            record["name"] = sent_name if isinstance(sent_name, str) else None
            self._faults.inject_for_name(record["name"])
            goal = self._goal(rules, body, website_id, hint, arrived)
        except Dropped:
            record["error"] = "connection dropped (injected reset_next)"
            record["fault"] = "reset_next"
            return Answer(200, None, {})
        except Rejection as rejection:
            record["status"] = rejection.status
            record["error"] = rejection.message
            record["fault"] = rejection.fault
            message = rejection.message
            if self._faults.settings.echo_authorization:
                message += f" (you sent Authorization: {authorization})"
            body_out = error_body(rules, rejection.status, message)
            return Answer(rejection.status, body_out, {**headers, **rejection.headers})
        status = self.flowsery_created_status if rules.created_status_configurable else 200
        record["status"] = status
        self._goals.append(goal)
        pad_to = self._faults.take_huge_body()
        if pad_to is not None:
            record["fault"] = "huge_body_next"
        return Answer(status, success_body(rules, goal["event_id"]), headers, pad_to=pad_to)

    def _record(self, record: RequestRecord) -> None:
        self._requests.append(record)
        self._cond.notify_all()

    def _authenticate(
        self, rules: ProviderRules, authorization: str | None, query: Mapping[str, str]
    ) -> tuple[str, str | None]:
        """Return (key, website id named in the query) or raise the 400/401/403 rejection."""
        scheme, _, key = (authorization or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Rejection(401, "Missing or invalid Authorization header (expected Bearer <key>)")
        if rules.key_prefixes and not key.startswith(rules.key_prefixes):
            raise Rejection(401, f"Invalid API key: expected {' or '.join(rules.key_prefixes)}…")
        if key in self._revoked:
            raise Rejection(401, "Invalid API key: revoked")
        website_id = None
        if rules.scoped_prefix is not None and key.startswith(rules.scoped_prefix):
            website_id = next((query[p] for p in rules.scope_params if query.get(p)), None)
            if website_id is None:
                wanted = " or ".join(rules.scope_params)
                raise Rejection(400, f"{wanted} is required with a {rules.scoped_prefix} token")
        if key in self._no_goals_write:
            raise Rejection(403, "Missing permission: goals:write")
        if (website_id or key) in self._suspended:
            raise Rejection(403, "Tracking suspended for this website")
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
            raise Rejection(429, "Too many requests", {**headers, "Retry-After": reset})
        return headers

    def _goal(
        self,
        rules: ProviderRules,
        body: Mapping[str, object],
        website_id: str | None,
        hint: str,
        received_at: float,
    ) -> GoalRecord:
        """Validate the body against the provider's rules; return the goal to store."""
        checked = check_goal_body(rules, body)
        visitor = checked.visitor_id
        if rules.needs_pageview and visitor is not None:
            is_bot = self._visitors[rules.name].get(visitor)
            if is_bot is None and self.require_pageview:
                raise Rejection(404, "visitor has no pageviews on this website")
            if is_bot:
                raise Rejection(400, "visitor is a bot")
        return GoalRecord(
            provider=rules.name,
            name=checked.name,
            visitor_id=visitor,
            session_id=checked.session_id,
            metadata=checked.metadata,
            description=checked.texts.get("description"),
            timezone=checked.texts.get("timezone"),
            event_id=object_id() if rules.returns_event_id else None,
            website_id=website_id,
            key_hint=hint,
            received_at=_iso(received_at),
            received_at_epoch=received_at,
        )
