"""What the fake API remembers, and how it answers one goal or payment request.

This module owns :class:`FakeAPIState` (goals, payments, requests, pageviews, key marks,
Flowsery's rate-limit windows, the faults; thread-safe, since the server runs in its own
thread), the records it keeps (:class:`GoalRecord`, :class:`PaymentRecord`,
:class:`PageviewRecord`, :class:`RequestRecord`) and the order of checks for one request
(``FakeAPIState._handle``, goals and payments alike): the fault schedule, the count faults, auth,
Flowsery's rate limit, the body, then the pageview (a goal) or the transaction id already
recorded (a payment: answered as a duplicate, not stored twice). DataFast's
``DELETE /api/v1/payments`` is :meth:`FakeAPIState.delete_payments`. The body rules are in
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
from datetime import UTC, datetime
from typing import Literal, TypedDict, TypeVar

from goaltrack.testing.fake_api.faults import Dropped, Faults
from goaltrack.testing.fake_api.rules import (
    PROVIDERS,
    RATE_LIMIT_WINDOW_S,
    ProviderRules,
    Rejection,
    check_goal_body,
    check_payment_body,
    check_provider,
    error_body,
    key_hint,
    object_id,
    parse_object,
    payment_body,
    success_body,
)

__all__ = [
    "Answer",
    "FakeAPIState",
    "GoalRecord",
    "PageviewRecord",
    "PaymentRecord",
    "RequestRecord",
]

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


class PaymentRecord(TypedDict):
    """One recorded payment, as ``GET /_fake/payments`` and ``FakeAPIState.payments`` show it.

    Field names are goaltrack's, whatever the provider's body called them.
    """

    provider: str
    transaction_id: str
    amount: float
    currency: str
    visitor_id: str | None
    session_id: str | None
    attributed: bool  # the visitor id names a visitor the provider has seen (a pageview)
    email: str | None
    name: str | None
    customer_id: str | None
    renewal: bool
    refunded: bool
    free_trial: bool
    timestamp: str | None  # as sent; None: the time it was received
    website_id: str | None
    key_hint: str
    received_at: str
    received_at_epoch: float


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
    """One goal or payment request, accepted or not, as ``GET /_fake/requests`` shows it."""

    provider: str
    kind: Literal["goal", "payment"]
    path: str
    status: int | None  # None: dropped (reset_next) or never answered (blackhole)
    error: str | None
    fault: str | None  # the injected fault that answered, if any
    name: str | None  # the goal name as sent
    transaction_id: str | None  # the payment's transaction id as sent
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
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


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
        self._payments: list[PaymentRecord] = []
        # Whose each payment is (its website id, or the website key), beside self._payments.
        self._payment_scopes: list[str] = []
        self._requests: list[RequestRecord] = []
        self._pageviews: list[PageviewRecord] = []
        self._visitors: dict[str, dict[str, bool]] = {p: {} for p in PROVIDERS}  # id -> is bot
        self._revoked: set[str] = set()
        self._no_goals_write: set[str] = set()
        self._no_payments_write: set[str] = set()
        self._suspended: set[str] = set()
        self._windows: dict[str, tuple[float, int]] = {}  # token -> (window end, requests)
        self._faults = Faults()

    # -- inspection

    @property
    def goals(self) -> list[GoalRecord]:
        """The accepted goals in arrival order (a copy)."""
        return self._copy(self._goals)

    @property
    def payments(self) -> list[PaymentRecord]:
        """The recorded payments in arrival order, each transaction once (a copy); a refund is a
        record of its own, with ``refunded`` true."""
        return self._copy(self._payments)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every goal and payment request seen, accepted or rejected, in arrival order (a
        copy)."""
        return self._copy(self._requests)

    def counts(self) -> dict[str, int]:
        """How many goals, payments, requests and pageviews were recorded: without copying them,
        for a caller that polls (a load test sampling how many goals arrived)."""
        with self._cond:
            return {
                "goals": len(self._goals),
                "payments": len(self._payments),
                "requests": len(self._requests),
                "pageviews": len(self._pageviews),
            }

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

    def wait_for_payments(self, count: int, timeout: float = 10.0) -> list[PaymentRecord]:
        """Block until at least ``count`` payments were recorded; return them all."""
        return self._wait_for(
            self._payments,
            count,
            timeout,
            lambda got: self._shortfall("payment", count, got, timeout),
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

    def deny_payments_write(self, key: str) -> None:
        """Payment requests with this key (typically a ``dft_`` token) get 403, missing
        payments:write."""
        with self._cond:
            self._no_payments_write.add(key)

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
            self._payments.clear()
            self._payment_scopes.clear()
            self._requests.clear()
            if not keep_pageviews:
                self._pageviews.clear()
                for visitors in self._visitors.values():
                    visitors.clear()
            self._revoked.clear()
            self._no_goals_write.clear()
            self._no_payments_write.clear()
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
        return self._handle("goal", provider, path, authorization, query, raw_body, arrived)

    def _handle_payment(
        self,
        provider: str,
        path: str,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> Answer:
        """:meth:`_handle_goal` for a payment: the same faults, then the payment rules."""
        return self._handle("payment", provider, path, authorization, query, raw_body, arrived)

    def _handle(
        self,
        kind: Literal["goal", "payment"],
        provider: str,
        path: str,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> Answer:
        rules = PROVIDERS[provider]
        with self._cond:
            record = RequestRecord(
                provider=provider,
                kind=kind,
                path=path,
                status=None,
                error=None,
                fault=None,
                name=None,
                transaction_id=None,
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
            answer = self._answer(kind, rules, record, authorization, query, raw_body, arrived)
            if trickle is not None:
                record["fault"] = "down" if record["fault"] == "down" else "trickle"
                answer = dataclasses.replace(answer, trickle_bytes_per_s=trickle)
            self._record(record)
            return answer

    def _answer(
        self,
        kind: Literal["goal", "payment"],
        rules: ProviderRules,
        record: RequestRecord,
        authorization: str | None,
        query: Mapping[str, str],
        raw_body: bytes,
        arrived: float,
    ) -> Answer:
        """The answer to one request outside a blackhole; fills in ``record``."""
        headers: dict[str, str] = {}
        try:
            self._faults.inject(arrived)
            key, website_id = self._authenticate(rules, authorization, query, kind)
            record["key_hint"] = hint = key_hint(key)
            headers = self._count_rate_limit(rules, key)
            body = parse_object(raw_body)
            if kind == "payment":
                sent_id = body.get(rules.payments.transaction_id)
                record["transaction_id"] = sent_id if isinstance(sent_id, str) else None
                return self._answer_payment(rules, record, body, key, website_id, hint, arrived)
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

    def _answer_payment(
        self,
        rules: ProviderRules,
        record: RequestRecord,
        body: Mapping[str, object],
        key: str,
        website_id: str | None,
        hint: str,
        arrived: float,
    ) -> Answer:
        """Record a payment, or answer that its transaction is recorded already (idempotency:
        one record per website, transaction id and refund flag). Raises :class:`Rejection`."""
        checked = check_payment_body(rules.payments, body)
        scope = website_id or key
        duplicate = any(
            p["provider"] == rules.name
            and p_scope == scope
            and p["transaction_id"] == checked.transaction_id
            and p["refunded"] == checked.refunded
            for p, p_scope in zip(self._payments, self._payment_scopes, strict=True)
        )
        status = self.flowsery_created_status if rules.created_status_configurable else 200
        record["status"] = status
        if not duplicate:
            visitor = checked.visitor_id
            attributed = visitor is not None and (
                not rules.needs_pageview or self._visitors[rules.name].get(visitor) is False
            )
            payment = PaymentRecord(
                provider=rules.name,
                transaction_id=checked.transaction_id,
                amount=checked.amount,
                currency=checked.currency,
                visitor_id=visitor,
                session_id=checked.session_id,
                attributed=attributed,
                email=checked.email,
                name=checked.name,
                customer_id=checked.customer_id,
                renewal=checked.renewal,
                refunded=checked.refunded,
                free_trial=checked.free_trial,
                timestamp=checked.timestamp,
                website_id=website_id,
                key_hint=hint,
                received_at=_iso(arrived),
                received_at_epoch=arrived,
            )
            self._payments.append(payment)
            self._payment_scopes.append(scope)
        else:
            record["error"] = "duplicate transaction id: not recorded again"
        answer = payment_body(rules.payments, checked.transaction_id, duplicate=duplicate)
        return Answer(status, answer, {})

    def delete_payments(
        self,
        provider: str,
        authorization: str | None,
        criteria: Mapping[str, object],
    ) -> tuple[int, dict[str, object]]:
        """DataFast's ``DELETE /api/v1/payments``: by ``transaction_id``, by the visitor
        (``datafast_visitor_id``), or by date range (``start_date`` / ``end_date``, ISO 8601,
        inclusive; either may be left out). Returns the status and body to answer."""
        rules = PROVIDERS[provider]
        query = {k: v for k, v in criteria.items() if isinstance(v, str)}
        with self._cond:
            try:
                if not rules.payments.deletable:
                    raise Rejection(404, "no such endpoint")
                key, website_id = self._authenticate(rules, authorization, query, "payment")
                matches = _payment_filter(rules, criteria)
            except Rejection as rejection:
                return rejection.status, error_body(rules, rejection.status, rejection.message)
            scope = website_id or key
            kept = [
                (payment, p_scope)
                for payment, p_scope in zip(self._payments, self._payment_scopes, strict=True)
                if not (payment["provider"] == rules.name and p_scope == scope and matches(payment))
            ]
            deleted = len(self._payments) - len(kept)
            self._payments[:] = [payment for payment, _ in kept]
            self._payment_scopes[:] = [p_scope for _, p_scope in kept]
            self._cond.notify_all()
        return 200, {"message": f"Deleted {deleted} payment(s)", "deleted": deleted}

    def _record(self, record: RequestRecord) -> None:
        self._requests.append(record)
        self._cond.notify_all()

    def _authenticate(
        self,
        rules: ProviderRules,
        authorization: str | None,
        query: Mapping[str, str],
        kind: Literal["goal", "payment"] = "goal",
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
        if kind == "goal" and key in self._no_goals_write:
            raise Rejection(403, "Missing permission: goals:write")
        if kind == "payment" and key in self._no_payments_write:
            raise Rejection(403, "Missing permission: payments:write")
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


def _payment_filter(
    rules: ProviderRules, criteria: Mapping[str, object]
) -> Callable[[PaymentRecord], bool]:
    """Which payments a DELETE names; raises :class:`Rejection` (400) without a criterion."""
    transaction_id = criteria.get("transaction_id")
    visitor = criteria.get(rules.payments.visitor)
    bounds: list[float | None] = []
    for field in ("start_date", "end_date"):
        value = criteria.get(field)
        if value is None:
            bounds.append(None)
            continue
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise Rejection(400, f"{field} must be an ISO 8601 date") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        bounds.append(when.timestamp())
    start, end = bounds
    if transaction_id is None and visitor is None and start is None and end is None:
        wanted = f"transaction_id, {rules.payments.visitor}, start_date or end_date"
        raise Rejection(400, f"one of {wanted} is required")

    def matches(payment: PaymentRecord) -> bool:
        at = payment["received_at_epoch"]
        return (
            (transaction_id is None or payment["transaction_id"] == transaction_id)
            and (visitor is None or payment["visitor_id"] == visitor)
            and (start is None or at >= start)
            and (end is None or at <= end)
        )

    return matches
