"""GoalTracker, the object every adapter and user calls, and the process-wide instance.

``track()`` (a goal) and ``track_payment()`` (a payment) validate in the caller's thread and
hand the item to a transport; they never wait for the network. An invalid item follows
:attr:`GoalTracker.strict`: raised as :class:`~goaltrack.InvalidGoal` (or
:class:`~goaltrack.InvalidPayment`) at the call site, or repaired (over-long metadata values cut)
or refused (counted as ``invalid``, logged at ERROR with the calling line). ``configure()`` /
``get_tracker()`` / ``track()`` / ``track_payment()`` / ``flush()`` at module level work on one
tracker per process, configured from arguments or ``GOALTRACK_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from types import FrameType, TracebackType
from typing import Any, ParamSpec

from goaltrack.config import configuration_problems
from goaltrack.cookies import Visitor
from goaltrack.delivery import Endpoint, InvalidConfiguration, probe
from goaltrack.goals import Goal, InvalidGoal, MetadataValue, overlong_keys
from goaltrack.hooks import signalled_hooks
from goaltrack.http_client import HttpClient, HttpPoster
from goaltrack.httpx_client import HttpxPoster, is_httpx_client
from goaltrack.items import Tracked
from goaltrack.options import (
    DEFAULT_PROVIDER,
    Mode,
    check_tracker_options,
    defaults,
    names,
    settings_from_env,
)
from goaltrack.payments import Amount, InvalidPayment, Payment
from goaltrack.providers import METADATA_VALUE_MAX_CHARS, Provider, get_provider
from goaltrack.redaction import redact
from goaltrack.retry import RetryPolicy
from goaltrack.serverless import announce, platform_for
from goaltrack.transports import (
    BackgroundTransport,
    DisabledTransport,
    Settlement,
    Stats,
    SyncTransport,
    Transport,
)
from goaltrack.transports.base import (
    DeliveryHook,
    DeliverySetup,
    DropHook,
    FailureHook,
    describe,
    use_process_delivery_setup,
)
from goaltrack.transports.courier import CourierTransport, courier_unavailable
from goaltrack.transports.courier.wire import CourierConfig

__all__ = [
    "GoalTracker",
    "TrackerOptions",
    "configure",
    "flush",
    "get_tracker",
    "track",
    "track_payment",
]

logger = logging.getLogger("goaltrack")

_TRACKER_OPTION_NAMES = names("tracker")
P = ParamSpec("P")

_MAPPING_RULE = "metadata is a flat object"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Where a goal asked for ahead of time (a decorator's, a signal connection's) was declared:
#: set while goaltrack tracks it, since no frame of the user's code is on the stack then.
call_site: ContextVar[str | None] = ContextVar("goaltrack_call_site", default=None)


def caller_location(skip: int = 1) -> str:
    """``file:line`` of the code that called goaltrack: the first frame outside the package."""
    site = call_site.get()
    if site is not None:
        return site
    frame: FrameType | None = sys._getframe(skip)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


@dataclass(frozen=True)
class TrackerOptions:
    """A tracker's options but its account, checked: what :class:`GoalTracker` holds.

    Each field is an option of :data:`goaltrack.options.TABLE` (scope ``tracker``), where its
    default, meaning and checks are; a test keeps the two equal.
    """

    mode: Mode
    max_queue_size: int
    max_in_flight: int
    delivery_process: bool | None
    serverless: bool | None
    max_retries: int
    backoff_base: float
    backoff_max: float
    give_up_after: float
    probe_interval_max: float
    refused_probe_interval_max: float
    refusal_give_up: float
    timeout: float
    shutdown_timeout: float
    sync_deadline: float
    flush_at_exit: bool
    truncate_metadata: bool
    proxy: str | None
    http_client: Any
    before_send: Callable[[Tracked], Tracked | None] | None
    outbox: str | None
    outbox_max_goals: int
    outbox_max_age: float
    celery_app: Any
    celery_queue: str | None
    on_delivery: DeliveryHook | None
    on_failure: FailureHook | None
    on_drop: DropHook | None
    strict: bool | None
    debug: bool

    def __post_init__(self) -> None:
        check_tracker_options({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TrackerOptions:
        """The options given by name, the table's defaults for the others."""
        known = defaults("tracker")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(
                f"unknown GoalTracker option(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**{**known, **options})


class GoalTracker:
    """Records goals for one provider account.

    ```python goals="signup"
    from goaltrack import GoalTracker

    # GoalTracker("df_...", provider="datafast"), or from the GOALTRACK_* variables:
    with GoalTracker.from_env(provider="datafast") as tracker:  # closed (flushed) at the end
        visitor_id = "0b7a4c36-5d1e-4a8f-9c2b-3e4f5a6b7c8d"  # the datafast_visitor_id cookie
        tracker.track("signup", {"plan": "pro"}, visitor_id=visitor_id)
    ```
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        provider: str | Provider = DEFAULT_PROVIDER,
        api_url: str | None = None,
        website_id: str | None = None,
        mode: Mode = "background",
        max_queue_size: int = 10_000,
        max_in_flight: int = 128,
        delivery_process: bool | None = None,
        serverless: bool | None = None,
        max_retries: int = 10,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        give_up_after: float = 24 * 3600.0,
        probe_interval_max: float = 1.0,
        refused_probe_interval_max: float = 60.0,
        refusal_give_up: float = 3600.0,
        timeout: float = 5.0,
        shutdown_timeout: float = 3.0,
        sync_deadline: float = 10.0,
        flush_at_exit: bool = True,
        truncate_metadata: bool = False,
        proxy: str | None = None,
        http_client: Any = None,
        before_send: Callable[[Tracked], Tracked | None] | None = None,
        outbox: str | None = None,
        outbox_max_goals: int = 100_000,
        outbox_max_age: float = 7 * 24 * 3600.0,
        celery_app: Any = None,
        celery_queue: str | None = None,
        on_delivery: DeliveryHook | None = None,
        on_failure: FailureHook | None = None,
        on_drop: DropHook | None = None,
        strict: bool | None = None,
        debug: bool = False,
    ) -> None:
        """The options are :data:`goaltrack.options.TABLE`'s (``docs/configuration.md``)."""
        given = locals()  # the options by name, for TrackerOptions
        self.options = TrackerOptions(**{name: given[name] for name in _TRACKER_OPTION_NAMES})
        errors = [
            p
            for p in configuration_problems(
                api_key=api_key, provider=provider, api_url=api_url, website_id=website_id
            )
            if p.level == "error"
        ]
        if errors:
            raise InvalidConfiguration(
                "; ".join(f"{p.message} ({p.id}; fix: {p.hint})" for p in errors)
            )
        self.provider = get_provider(provider)
        self.api_url = (api_url or self.provider.default_api_url).rstrip("/")
        self.website_id = website_id
        self.mode: Mode = self.options.mode if api_key else "disabled"
        if not api_key and self.options.mode != "disabled":
            logger.warning(
                "goaltrack: no API key for %s; goals are validated but not sent",
                self.provider.name,
            )
        self._debug = self.options.debug
        if self._debug:
            show_debug_log()
        self._settlement = Settlement(
            **signalled_hooks(
                self,
                on_delivery=self.options.on_delivery,
                on_failure=self.options.on_failure,
                on_drop=self.options.on_drop,
            ),
            debug=self._debug,
        )
        opts = self.options
        self._retry = RetryPolicy(
            opts.max_retries,
            opts.backoff_base,
            opts.backoff_max,
            opts.give_up_after,
            opts.probe_interval_max,
            opts.refused_probe_interval_max,
            opts.refusal_give_up,
        )
        self._before_send = opts.before_send
        self._check_http_client()
        self.platform = platform_for(opts.serverless)
        """The serverless platform this tracker works for (:mod:`goaltrack.serverless`), or None."""
        self._transport = self._make_transport(api_key)
        if self.platform is not None:
            announce(
                self.platform,
                mode=self.mode,
                outbox=opts.outbox if self.mode == "background" else None,
                shutdown_timeout=opts.shutdown_timeout,
            )

    def _make_transport(self, api_key: str | None) -> Transport:
        self._endpoint = (
            Endpoint(self.provider, api_key, self.api_url, self.website_id) if api_key else None
        )
        if self.mode == "disabled" or self._endpoint is None:
            return DisabledTransport(self._settlement)
        opts = self.options
        endpoint = self._endpoint
        retry = self._retry
        http = self._http_factory()
        if self.mode == "sync":
            return SyncTransport(
                endpoint,
                self._settlement,
                retry=retry,
                sync_deadline=opts.sync_deadline,
                http=http,
            )
        if self.mode == "celery":
            from goaltrack.transports.celery import CeleryTransport

            return CeleryTransport(self._settlement, app=opts.celery_app, queue=opts.celery_queue)
        if opts.outbox:
            from goaltrack.transports.outbox import OutboxTransport

            return OutboxTransport(
                opts.outbox,
                endpoint,
                self._settlement,
                retry=retry,
                max_in_flight=opts.max_in_flight,
                timeout=opts.timeout,
                shutdown_timeout=opts.shutdown_timeout,
                flush_at_exit=opts.flush_at_exit,
                http=http,
                max_goals=opts.outbox_max_goals,
                max_age=opts.outbox_max_age,
            )

        def threads() -> BackgroundTransport:
            return BackgroundTransport(
                endpoint,
                self._settlement,
                retry=retry,
                max_queue_size=opts.max_queue_size,
                max_in_flight=opts.max_in_flight,
                shutdown_timeout=opts.shutdown_timeout,
                flush_at_exit=opts.flush_at_exit,
                http=http,
            )

        if opts.delivery_process is False:
            return threads()
        if opts.delivery_process is None and self.platform is not None:
            return threads()  # a courier would be frozen with this process

        unavailable = courier_unavailable(provider=self.provider, http_client=opts.http_client)
        if unavailable is not None:
            if opts.delivery_process:
                logger.warning(
                    "goaltrack: delivery_process=True, but no delivery process can run here "
                    "(%s): delivering from this process's threads",
                    unavailable,
                )
            return threads()
        assert api_key is not None
        return CourierTransport(
            endpoint,
            self._settlement,
            config=CourierConfig(
                provider=self.provider.name,
                api_key=api_key,
                api_url=self.api_url,
                website_id=self.website_id,
                retry=retry,
                max_queue_size=opts.max_queue_size,
                max_in_flight=opts.max_in_flight,
                timeout=opts.timeout,
                proxy=opts.proxy,
                shutdown_timeout=opts.shutdown_timeout,
                log_level=logging.getLogger("goaltrack").getEffectiveLevel(),
            ),
            flush_at_exit=opts.flush_at_exit,
            fallback=threads,
        )

    def _http_factory(self, timeout: float | None = None) -> Callable[[], HttpPoster]:
        """What makes this tracker's HTTP client: the user's ``http_client``, else the default."""
        user_client = self.options.http_client
        if user_client is not None:
            return self._user_http

        assert self._endpoint is not None
        return functools.partial(
            HttpClient,
            timeout=self.options.timeout if timeout is None else timeout,
            proxy=self.options.proxy,
            target_url=self._endpoint.url,
        )

    def _check_http_client(self) -> None:
        """A factory is called now, so that one returning no client fails here, not later in
        a worker; that first client serves this process (a forked child makes its own)."""
        given = self.options.http_client
        self._first_user_client: Any = None
        if given is not None and not is_httpx_client(given):
            client = given()
            if not is_httpx_client(client):
                raise InvalidConfiguration(
                    f"http_client factory returned {type(client).__name__}, "
                    "not an httpx.Client or httpx2.Client"
                )
            self._first_user_client = (os.getpid(), client)

    def _user_http(self) -> HttpPoster:
        first, self._first_user_client = self._first_user_client, None
        if first is not None and first[0] == os.getpid():
            return HttpxPoster(self.options.http_client, made=first[1])
        return HttpxPoster(self.options.http_client)

    def _delivery_setup(self) -> DeliverySetup:
        http = self._http_factory() if self._endpoint is not None else None
        return DeliverySetup(self._endpoint, self._retry, http, self._settlement)

    @classmethod
    def from_env(cls, api_key: str | None = None, **overrides: Any) -> GoalTracker:
        """A tracker configured from the ``GOALTRACK_*`` environment variables, then the
        arguments given (``GoalTracker``'s: see its signature)."""
        settings: dict[str, Any] = settings_from_env()
        if api_key is not None:
            settings["api_key"] = api_key
        return cls(**{**settings, **overrides})

    @property
    def strict(self) -> bool:
        """Whether an invalid goal raises :class:`~goaltrack.InvalidGoal` at the call site.

        The ``strict`` option when set; otherwise True under goaltrack's pytest plugin, else False.
        """
        given = self.options.strict
        if given is not None:
            return given
        return strict_by_default

    # -- tracking -----------------------------------------------------------------------------

    def track(
        self,
        name: str,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        visitor_id: str | None = None,
        session_id: str | None = None,
        description: str | None = None,
        timezone: str | None = None,
    ) -> bool:
        """Validate goal *name* now and hand it over for delivery; never waits for the network.

        ``track("signup", {"plan": "pro"}, visitor_id=...)``: the name and the metadata may be
        given by position, everything else by keyword. Returns True when the goal was accepted
        for delivery (queued in memory, stored in the outbox, published to Celery; in
        ``sync`` mode: delivered), False when it will not be sent (``before_send`` filtered it
        out, the queue is full, the tracker is closed or disabled; in ``sync`` mode: the API
        refused it or never answered).
        A goal accepted may still fail later: the hooks, ``stats`` and the log say so.

        A goal the provider would refuse: when the tracker is :attr:`strict`, raises
        :class:`~goaltrack.InvalidGoal` (TypeError for metadata given as a str: a visitor id given
        by position). Otherwise never raises: an over-long metadata value is cut to the
        provider's limit (one WARNING naming the goal and the key) and sent; anything else is not
        sent, counted in ``stats.invalid``, logged at ERROR with the rule and the calling line,
        and False is returned.
        """
        if self._refused_string_metadata(
            name,
            metadata,
            "track(name, metadata, *, visitor_id=...): the second argument is the metadata "
            "mapping, not a str; pass a visitor id by keyword: track(name, visitor_id='...')",
        ):
            return False
        goal = self.make_goal(
            name, visitor_id, session_id, metadata, description, timezone, require_visitor=True
        )
        if goal is None:
            return False
        return self.submit(goal)

    def track_visitor(
        self,
        visitor: Visitor | None,
        name: str,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        description: str | None = None,
        timezone: str | None = None,
    ) -> bool:
        """Track for the visitor read from a request's cookies; the adapters' entry point.

        *visitor* is what :func:`~goaltrack.visitor_from_cookies` returned: a
        :class:`~goaltrack.Visitor`, or None for a visitor without the provider's cookie. Then
        (for a provider that needs a visitor) the goal is still validated, so a bad name
        raises, but nothing is sent and False is returned. Otherwise returns what
        :meth:`track` returns. A visitor id string is a TypeError: that is
        ``track(name, visitor_id=...)``.
        """
        provider = self.provider
        if visitor is None:
            visitor_id = session_id = None
        elif type(visitor) is Visitor or (isinstance(visitor, tuple) and len(visitor) == 2):
            visitor_id, session_id = visitor
        else:
            raise TypeError(
                "track_visitor(visitor, name, ...) takes the Visitor that "
                "visitor_from_cookies() returns (or None), not a "
                f"{type(visitor).__name__}; for a visitor id you already have, call "
                "track(name, visitor_id='...')"
            )
        if self._refused_string_metadata(
            name,
            metadata,
            "track_visitor(visitor, name, metadata): metadata is a mapping, not a str",
        ):
            return False
        # require_visitor=False: without a visitor the goal is validated, then not sent.
        goal = self.make_goal(
            name, visitor_id, session_id, metadata, description, timezone, require_visitor=False
        )
        if goal is None:
            return False
        if visitor_id is None and provider.visitor_required:
            logger.debug(
                "goaltrack: goal %r not sent: the visitor has no %s cookie",
                goal.name,
                provider.visitor_cookie,
            )
            return False
        return self.submit(goal)

    def track_payment(
        self,
        amount: Amount,
        currency: str,
        transaction_id: str,
        *,
        visitor_id: str | None = None,
        session_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
        customer_id: str | None = None,
        renewal: bool = False,
        refunded: bool = False,
        free_trial: bool | None = None,
        timestamp: _dt.datetime | str | None = None,
    ) -> bool:
        """Validate a payment now and hand it over for delivery; never waits for the network.

        ``track_payment(Decimal("29.00"), "USD", "ch_123", visitor_id=...)``: the amount (a
        finite number ≥ 0; 0 is a free trial), the ISO 4217 currency and the payment provider's
        transaction id by position, everything else by keyword. The visitor id attributes the
        revenue: in a payment webhook, pass the one captured at checkout. The API records a
        transaction id once, so a payment is retried after a timeout without being counted twice;
        a refund is the original transaction id with ``refunded=True``.

        Returns what :meth:`track` returns, and follows the same :attr:`strict` rule for an
        invalid payment (:class:`~goaltrack.InvalidPayment`, a subclass of
        :class:`~goaltrack.InvalidGoal`). ``email`` and ``name`` are personal data: see
        ``before_send`` to keep them out.
        """
        payment = self.make_payment(
            amount,
            currency,
            transaction_id,
            visitor_id=visitor_id,
            session_id=session_id,
            email=email,
            name=name,
            customer_id=customer_id,
            renewal=renewal,
            refunded=refunded,
            free_trial=free_trial,
            timestamp=timestamp,
        )
        if payment is None:
            return False
        return self.submit(payment)

    def make_payment(
        self, amount: Amount, currency: str, transaction_id: str, **fields: Any
    ) -> Payment | None:
        """The validated payment (*fields*: :meth:`Payment.create <goaltrack.Payment.create>`'s
        keywords); for one the provider would refuse, the :attr:`strict` rule: raise
        :class:`~goaltrack.InvalidPayment`, or count and log it and return None."""
        try:
            return Payment.create(self.provider, amount, currency, transaction_id, **fields)
        except InvalidPayment as exc:
            if self.strict:
                raise
            self.refuse_payment(transaction_id, exc)
            return None

    def refuse_payment(
        self, transaction_id: object, problem: InvalidGoal, context: str = ""
    ) -> None:
        """Count and log a payment that will not be sent because the provider would refuse it."""
        self._settlement.count("invalid", kind="payment")
        logger.error(
            "goaltrack: invalid payment %s not sent (tracked at %s): %s%s (rule: %s)",
            redact(repr(transaction_id), 100),
            caller_location(),
            context,
            redact(problem.problem),
            problem.rule,
        )

    def _refused_string_metadata(self, name: object, metadata: object, problem: str) -> bool:
        """A str given as metadata (a visitor id by position, usually): TypeError when strict,
        else refused like any invalid goal. False when *metadata* is not a str."""
        if not isinstance(metadata, str):
            return False
        if self.strict:
            raise TypeError(problem)
        self.refuse(name, InvalidGoal(problem, field="metadata", rule=_MAPPING_RULE))
        return True

    def make_goal(
        self,
        name: str,
        visitor_id: str | None,
        session_id: str | None,
        metadata: Mapping[str, MetadataValue] | None,
        description: str | None,
        timezone: str | None,
        *,
        require_visitor: bool,
        context: str = "",
    ) -> Goal | None:
        """The validated goal; for one the provider would refuse, the :attr:`strict` rule.

        Strict: raises :class:`~goaltrack.InvalidGoal`. Otherwise returns the goal repaired
        (over-long metadata values cut, with a WARNING), or None when it cannot be repaired
        (counted as ``invalid``, logged at ERROR). *context* prefixes the problem in the log.
        """

        def create(truncate_metadata: bool) -> Goal:
            return Goal.create(
                self.provider,
                name,
                visitor_id=visitor_id,
                session_id=session_id,
                metadata=metadata,
                description=description,
                timezone=timezone,
                truncate_metadata=truncate_metadata,
                require_visitor=require_visitor,
            )

        try:
            return create(self.options.truncate_metadata)
        except InvalidGoal as exc:
            if self.strict:
                if context:
                    raise InvalidGoal(
                        f"{context}{exc.problem}", field=exc.field, rule=exc.rule
                    ) from exc
                raise
            problem = exc
        if problem.repairable and isinstance(metadata, Mapping):
            try:
                goal = create(truncate_metadata=True)
            except InvalidGoal as again:
                problem = again
            else:
                logger.warning(
                    "goaltrack: goal %r: metadata value for %s cut to %d characters, as the "
                    "provider's own script does (tracked at %s)",
                    goal.name,
                    ", ".join(repr(key) for key in overlong_keys(metadata)),
                    METADATA_VALUE_MAX_CHARS,
                    caller_location(),
                )
                return goal
        self.refuse(name, problem, context)
        return None

    def refuse(self, name: object, problem: InvalidGoal, context: str = "") -> None:
        """Count and log a goal that will not be sent because the provider would refuse it."""
        self._settlement.count("invalid")
        logger.error(
            "goaltrack: invalid goal %s not sent (tracked at %s): %s%s (rule: %s)",
            redact(repr(name), 100),
            caller_location(),
            context,
            redact(problem.problem),
            problem.rule,
        )

    def submit(self, goal: Tracked) -> bool:
        """Hand an already validated goal (or payment) to ``before_send``, then the transport
        (or an active capture).

        Returns what :meth:`track` returns: False when it was filtered out or dropped; True
        while ``capture_goals()`` is active.
        """
        if self._before_send is not None:
            kept = self._run_before_send(goal)
            if kept is None:
                return False
            goal = kept
        if _captures:
            for goals, payments in _captures:
                if isinstance(goal, Goal):
                    goals.append(goal)
                else:
                    payments.append(goal)
            return True
        if self._debug:
            logger.debug("goaltrack debug: tracked %s (mode %s)", describe(goal), self.mode)
        return self._transport.submit(goal)

    def _run_before_send(self, goal: Tracked) -> Tracked | None:
        hook = self._before_send
        assert hook is not None
        try:
            returned: object = hook(goal)
        except Exception:
            # The user's hook must never fail the request that tracked the goal.
            logger.exception("goaltrack: before_send raised for %s; sent unchanged", goal.label)
            return goal
        if returned is None:
            self._settlement.count("filtered", kind=goal.kind)
            logger.debug("goaltrack: before_send filtered out %s", goal.label)
            return None
        if returned is goal:
            return goal
        if type(returned) is not type(goal):
            logger.error(
                "goaltrack: before_send returned %s for %s, not a %s or None; sent unchanged",
                type(returned).__name__,
                goal.label,
                type(goal).__name__,
            )
            return goal
        if isinstance(returned, Payment):
            return self._revalidated_payment(returned)
        assert isinstance(returned, Goal)
        return self.make_goal(
            returned.name,
            returned.visitor_id,
            returned.session_id,
            returned.metadata,
            returned.description,
            returned.timezone,
            require_visitor=self.provider.visitor_required,
            context="before_send returned an invalid goal: ",
        )

    def _revalidated_payment(self, payment: Payment) -> Payment | None:
        """A payment ``before_send`` returned, validated again (the same :attr:`strict` rule)."""
        context = "before_send returned an invalid payment: "
        try:
            return Payment.create(
                self.provider,
                payment.amount,
                payment.currency,
                payment.transaction_id,
                visitor_id=payment.visitor_id,
                session_id=payment.session_id,
                email=payment.customer_email,
                name=payment.customer_name,
                customer_id=payment.customer_id,
                renewal=payment.renewal,
                refunded=payment.refunded,
                free_trial=payment.free_trial,
                timestamp=payment.timestamp,
            )
        except InvalidPayment as exc:
            if self.strict:
                raise InvalidPayment(
                    f"{context}{exc.problem}", field=exc.field, rule=exc.rule
                ) from exc
            self.refuse_payment(payment.transaction_id, exc, context)
            return None

    # -- delivery control ---------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until nothing tracked before the call is pending, for at most *timeout* seconds.

        True means every such goal has settled: delivered, finally failed (refused by the API,
        or given up) or dropped. It does not mean delivered: a goal the API answered with a 404
        is settled too. False means *timeout* passed first, with goals still queued, retrying
        or in flight. Failures are reported by the ``on_failure`` / ``on_drop`` hooks, the
        ``stats`` counters (``failed``, ``dropped``) and the ``goaltrack`` logger.
        """
        return self._transport.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for async code: waits in a worker thread, not on the event loop."""
        return await asyncio.to_thread(self._transport.flush, timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush for at most *timeout* seconds, then stop; what is left is dropped and counted.

        The drop and failure summaries not logged yet are logged now, whatever the transport: a
        closed tracker's counts must not appear later among another tracker's lines.
        """
        closed = self._transport.close(timeout)
        self._settlement.flush_summaries()
        return closed

    def check_connection(self, timeout: float = 5.0) -> tuple[bool, str]:
        """Is the API reachable, and does it take the key? Records nothing. (ok, explanation)"""
        if self._endpoint is None:
            return False, "no API key is set, so nothing can be sent"
        http = self._http_factory(timeout)()
        try:
            return probe(self._endpoint, http)
        finally:
            http.close()

    @property
    def stats(self) -> Stats:
        """Counters: queued, delivered, failed, retried, dropped, possible duplicates, pending."""
        return self._transport.stats

    def __enter__(self) -> GoalTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(self.options.shutdown_timeout)

    def __repr__(self) -> str:
        return (
            f"<GoalTracker provider={self.provider.name!r} api_url={self.api_url!r} "
            f"mode={self.mode!r} key=<redacted>>"
        )


def show_debug_log() -> None:
    """Make the ``goaltrack`` logger's DEBUG lines visible: its level, and stderr if need be.

    Where the application configured logging (any handler on the way to the root logger), the
    lines go there; otherwise Python would show only warnings, so a stderr handler is added.
    """
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)


#: Set by goaltrack's pytest plugin: trackers without an explicit ``strict`` raise InvalidGoal.
strict_by_default = False

#: Lists that ``goaltrack.testing.capture_goals()`` collects goals and payments into, instead of
#: sending them: (goals, payments) per active capture.
_captures: list[tuple[list[Goal], list[Payment]]] = []

_process_tracker: GoalTracker | None = None
_process_tracker_lock = threading.Lock()


def _arguments_of_goaltracker(*first: inspect.Parameter) -> inspect.Signature:
    """GoalTracker's signature, for the functions that take its arguments through ``**``."""
    signature = inspect.signature(GoalTracker)
    return signature.replace(
        parameters=[*first, *signature.parameters.values()], return_annotation="GoalTracker"
    )


def _with_arguments_of(
    cls: Callable[P, GoalTracker],
) -> Callable[[Callable[..., GoalTracker]], Callable[P, GoalTracker]]:
    """Type a function taking *cls*'s arguments through ``**`` as taking them by name (for type
    checkers), and show them (for ``help()`` and completion)."""

    def typed(func: Callable[..., GoalTracker]) -> Callable[P, GoalTracker]:
        func.__signature__ = _arguments_of_goaltracker()  # type: ignore[attr-defined]
        return func

    return typed


@_with_arguments_of(GoalTracker)
def configure(api_key: str | None = None, **kwargs: Any) -> GoalTracker:
    """Set up the process-wide tracker from arguments, falling back to the environment.

    Takes :class:`GoalTracker`'s arguments (see its signature). Replaces (and closes) a tracker
    configured before.
    """
    settings: dict[str, Any] = settings_from_env()
    if api_key is not None:
        settings["api_key"] = api_key
    settings.update(kwargs)
    return use_as_process_tracker(GoalTracker(**settings))


# What help(), IDEs and completion show: every option by name, as GoalTracker takes them.
GoalTracker.from_env.__func__.__signature__ = _arguments_of_goaltracker(  # type: ignore[attr-defined]
    inspect.Parameter("cls", inspect.Parameter.POSITIONAL_ONLY)
)


def use_as_process_tracker(tracker: GoalTracker) -> GoalTracker:
    """Make *tracker* the process-wide one, closing the one before (the adapters' configure)."""
    global _process_tracker
    with _process_tracker_lock:
        previous, _process_tracker = _process_tracker, tracker
    if previous is not None and previous is not tracker:
        previous.close(previous.options.shutdown_timeout)
    return tracker


def get_tracker() -> GoalTracker:
    """The process-wide tracker; configured from the environment on first use if need be.

    A configuration that cannot work is logged and gives a disabled tracker, never an error
    here (``goaltrack.startup``).
    """
    global _process_tracker
    tracker = _process_tracker
    if tracker is not None:
        return tracker
    with _process_tracker_lock:
        if _process_tracker is None:
            from goaltrack.startup import tracker_from_env

            _process_tracker = tracker_from_env()
        return _process_tracker


use_process_delivery_setup(lambda: get_tracker()._delivery_setup())


def track(
    name: str,
    metadata: Mapping[str, MetadataValue] | None = None,
    *,
    visitor_id: str | None = None,
    session_id: str | None = None,
    description: str | None = None,
    timezone: str | None = None,
) -> bool:
    """:meth:`GoalTracker.track` on the process-wide tracker."""
    return get_tracker().track(
        name,
        metadata,
        visitor_id=visitor_id,
        session_id=session_id,
        description=description,
        timezone=timezone,
    )


def track_payment(
    amount: Amount,
    currency: str,
    transaction_id: str,
    *,
    visitor_id: str | None = None,
    session_id: str | None = None,
    email: str | None = None,
    name: str | None = None,
    customer_id: str | None = None,
    renewal: bool = False,
    refunded: bool = False,
    free_trial: bool | None = None,
    timestamp: _dt.datetime | str | None = None,
) -> bool:
    """:meth:`GoalTracker.track_payment` on the process-wide tracker."""
    return get_tracker().track_payment(
        amount,
        currency,
        transaction_id,
        visitor_id=visitor_id,
        session_id=session_id,
        email=email,
        name=name,
        customer_id=customer_id,
        renewal=renewal,
        refunded=refunded,
        free_trial=free_trial,
        timestamp=timestamp,
    )


def flush(timeout: float | None = None) -> bool:
    """:meth:`GoalTracker.flush` on the process-wide tracker."""
    return get_tracker().flush(timeout)
