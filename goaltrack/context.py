"""The request context, once for every adapter: the current visitor and the request's goals.

- One ContextVar holds what the adapter bound for the request being handled: a
  :class:`~goaltrack.Visitor`, or a :class:`VisitorSource` that reads the cookies only if
  someone asks (:class:`RequestGoals` is one). :func:`bind_visitor` / :func:`unbind_visitor`
  set it (they are the ContextVar's own ``set`` / ``reset``: nothing more on the request
  path), :func:`current_visitor` and :func:`current_goals` read it. A ContextVar, so that
  threads and asyncio tasks each see their own request's binding and nothing leaks between them.
- :class:`RequestGoals`: one request as goaltrack sees it (visitor, bot, goals tracked) and its
  ``track()``, the steps every adapter's tracking call goes through: validate under the
  tracker's ``strict`` rule for invalid goals (raise :class:`~goaltrack.InvalidGoal`, or repair
  or refuse with a log line naming the caller's line), apply the bot rule
  (:mod:`goaltrack.bots`), hand the goal to the tracker now or, where the adapter has
  transactions (Django's ``on_commit``), once the current one commits; never raise anything
  else. With ``debug``, a goal not sent says why.
- :meth:`RequestGoals.track_payment`: the same for a payment, for the request's visitor or one
  given (a payment webhook carries no visitor cookie: the id captured at checkout is passed).
  No bot rule: revenue is recorded whoever made the request.
- :func:`log_untracked`: the one log line for a goal that request-time code could not track.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, TypeAlias

from goaltrack.bots import request_is_bot
from goaltrack.cookies import Visitor, visitor_from_cookies
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.payments import Amount, Payment
from goaltrack.providers import Provider

if TYPE_CHECKING:
    from goaltrack.adapter import Adapter
    from goaltrack.decorator import GoalSpec
    from goaltrack.tracker import GoalTracker

__all__ = [
    "Metadata",
    "RequestGoals",
    "VisitorSource",
    "bind_visitor",
    "current_goals",
    "current_visitor",
    "goals_outside_a_request",
    "log_untracked",
    "unbind_visitor",
]

logger = logging.getLogger("goaltrack")

#: A goal's metadata as the user gives it.
Metadata = Mapping[str, MetadataValue]


class VisitorSource:
    """A request's visitor, read from its cookies only when first asked for.

    Middleware binds one of these instead of a :class:`~goaltrack.Visitor`, so that a request
    whose code never tracks a goal never pays for cookie parsing and id validation.
    """

    __slots__ = ()

    @property
    def visitor(self) -> Visitor | None:
        raise NotImplementedError


#: What the request context holds.
Bound: TypeAlias = Visitor | VisitorSource | None

_bound: ContextVar[Bound] = ContextVar("goaltrack_visitor", default=None)

#: ``bind_visitor(visitor)``: make *visitor* (a :class:`~goaltrack.Visitor`, a
#: :class:`VisitorSource` such as a :class:`RequestGoals`, or None) the current one until
#: ``unbind_visitor(token)`` with the token it returns. A source is asked for its visitor only
#: when :func:`current_visitor` is called.
bind_visitor: Callable[[Bound], Token[Bound]] = _bound.set
#: ``unbind_visitor(token)``: restore what was bound before the matching :func:`bind_visitor`.
unbind_visitor: Callable[[Token[Bound]], None] = _bound.reset


def current_visitor() -> Visitor | None:
    """The visitor of the request being handled (set by a goaltrack middleware), or None."""
    bound = _bound.get()
    if isinstance(bound, VisitorSource):
        return bound.visitor
    return bound


def current_goals() -> RequestGoals | None:
    """The :class:`RequestGoals` a middleware bound for the request being handled, or None."""
    bound = _bound.get()
    return bound if isinstance(bound, RequestGoals) else None


def log_untracked(name: str, origin: str, detail: str = "") -> None:
    """The catch-all rule's log line, from inside an ``except`` block: the goal was not tracked."""
    logger.error(
        "goaltrack: goal %r from %s was not tracked%s",
        name,
        origin,
        f" ({detail})" if detail else "",
        exc_info=True,
    )


class RequestGoals(VisitorSource):
    """What goaltrack knows about one request, and ``track()`` for its visitor.

    Cheap to build: the cookies and the User-Agent given are read the first time ``visitor``,
    ``is_bot`` or ``track`` needs them, so a request that tracks nothing never parses them.
    Each adapter subclasses it to say what ``request`` is in its framework.
    """

    __slots__ = ("_cookies", "_is_bot", "_user_agent", "_visitor", "adapter", "provider", "tracked")

    def __init__(
        self,
        adapter: Adapter,
        provider: Provider,
        cookies: Mapping[str, str] | str | bytes | None = None,
        user_agent: str | bytes | None = None,
    ) -> None:
        self.adapter = adapter
        self.provider = provider
        self.tracked = 0
        """Goals this request queued (the flush at request end waits only if there are any)."""
        self._cookies = cookies
        self._user_agent = user_agent
        self._visitor: Visitor | None = None
        self._is_bot: bool | None = None  # None: not read yet

    def read_already(self, visitor: Visitor | None, is_bot: bool) -> None:
        """For adapters that read the request eagerly (ASGI: its scope state shows the visitor)."""
        self._visitor = visitor
        self._is_bot = is_bot

    @property
    def visitor(self) -> Visitor | None:
        """The provider's visitor ids from the cookies; None for cookieless visitors and bots."""
        if self._is_bot is None:
            self._read()
        return self._visitor

    @property
    def is_bot(self) -> bool:
        """True for a known crawler (when ``skip_bots`` is on) with something to track: no goals."""
        is_bot = self._is_bot
        if is_bot is None:
            is_bot = self._read()
        return is_bot

    @property
    def tracker(self) -> GoalTracker:
        """The tracker this request's goals go to."""
        return self.adapter.tracker

    @property
    def request(self) -> object:
        """The framework's request (``goal_tracked``'s ``request``); None outside a request."""
        return None

    def describe(self) -> str:
        """Where the request went (its path), for log lines; empty when unknown."""
        return ""

    def _read(self) -> bool:
        cookies, provider = self._cookies, self.provider
        visitor = visitor_from_cookies(cookies, provider) if cookies else None
        bot = request_is_bot(self._user_agent, visitor, provider, skip_bots=self.adapter.skip_bots)
        self._visitor = None if bot else visitor
        self._is_bot = bot
        if visitor is not None:  # kept otherwise, to tell a malformed cookie from none (debug)
            self._cookies = None
        self._user_agent = None
        return bot

    def _cookie_sent(self) -> bool:
        """Whether the request carried the provider's visitor cookie at all (for debug lines)."""
        name = self.provider.visitor_cookie
        cookies: object = self._cookies
        if cookies is None:
            request = self.request
            if not isinstance(request, Mapping):
                return False
            # An ASGI scope: its raw headers.
            cookies = b"; ".join(
                value for key, value in request.get("headers", ()) if key == b"cookie"
            )
        if isinstance(cookies, bytes):
            return name.encode() in cookies
        if isinstance(cookies, str):
            return name in cookies
        return isinstance(cookies, Mapping) and name in cookies

    def track(
        self,
        name: str,
        metadata: Metadata | None = None,
        *,
        description: str | None = None,
        timezone: str | None = None,
    ) -> bool:
        """Queue goal *name* for this request's visitor; never waits for the network.

        The same signature as :meth:`GoalTracker.track <goaltrack.GoalTracker.track>`, less the
        visitor (the request's). A goal the provider would refuse follows the tracker's
        ``strict`` rule (raise :class:`~goaltrack.InvalidGoal`, or repair or refuse with a log
        line and return False), even when nothing would be sent. Returns True when the goal was
        accepted for delivery (in ``sync`` mode: delivered); False, sending nothing, for a bot,
        for a visitor without the provider's cookie (when the provider needs one), and when the
        tracker will not send it (disabled, or the queue is full).
        """
        return self.track_steps(name, metadata, description, timezone, None)

    def track_spec(self, spec: GoalSpec, metadata: Metadata | None) -> None:
        """Track a decorator's or signal connection's goal, with the spec's options."""
        self.track_steps(spec.name, metadata, spec.description, spec.timezone, spec.on_commit)

    def track_steps(
        self,
        name: str,
        metadata: Metadata | None,
        description: str | None,
        timezone: str | None,
        on_commit: bool | None,
    ) -> bool:
        """The steps of every tracking call: :meth:`prepare`, then :meth:`send` now, or once
        the current transaction commits when the adapter defers it (its
        :meth:`~goaltrack.adapter.Adapter.at_commit` for *on_commit*; then True, the goal being
        valid and due to be sent)."""
        goal = self.prepare(name, metadata, description, timezone)
        if goal is None:
            return False
        at_commit = self.adapter.at_commit(on_commit)
        if at_commit is None:
            return self.send(goal, name, metadata)
        at_commit(functools.partial(self._send_at_commit, goal, name, metadata))
        return True

    def prepare(
        self,
        name: str,
        metadata: Metadata | None,
        description: str | None,
        timezone: str | None,
    ) -> Goal | None:
        """The goal to send for this request's visitor, validated; None when none is to be sent
        (invalid and not strict, a bot, no visitor): with ``debug``, a DEBUG line says why."""
        tracker = self.adapter.tracker
        given: object = metadata
        if given is not None and type(given) is not dict and not isinstance(given, Mapping):
            problem = InvalidGoal(
                "track_goal(request, ...) takes metadata as a mapping; "
                "callables are for decorators",
                field="metadata",
                rule="metadata is a flat object",
            )
            if tracker.strict:
                raise problem
            tracker.refuse(name, problem)
            return None
        is_bot = self.is_bot  # reads the cookies and the User-Agent
        visitor = self._visitor
        visitor_id, session_id = (None, None) if visitor is None else visitor
        goal = tracker.make_goal(
            name, visitor_id, session_id, metadata, description, timezone, require_visitor=False
        )
        if goal is None:
            return None
        if is_bot:
            logger.debug("goaltrack: goal %r not sent: the User-Agent is a known bot", goal.name)
            return None
        if visitor is None and self.provider.visitor_required:
            logger.debug(
                "goaltrack: goal %r not sent: %s %s cookie",
                goal.name,
                "a malformed" if self._cookie_sent() else "no",
                self.provider.visitor_cookie,
            )
            return None
        return goal

    def send(self, goal: Goal, name: str, metadata: Metadata | None) -> bool:
        """Hand a goal from :meth:`prepare` to the tracker; ``goal_tracked`` (with the *name*
        and *metadata* as given) if it was taken."""
        tracker = self.adapter.tracker
        sent = tracker.submit(goal)
        if sent:
            self.tracked += 1
            signals = self.adapter.signals
            if signals.signals["goal_tracked"].receivers:
                signals.tracked(tracker, name, self._visitor, metadata, self.request)
        return sent

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
        on_commit: bool | None = None,
    ) -> bool:
        """Queue a payment for this request's visitor, or for *visitor_id* when given (a
        payment webhook: the id captured at checkout); never waits for the network.

        The arguments of :meth:`GoalTracker.track_payment <goaltrack.GoalTracker.track_payment>`.
        Without *visitor_id* the visitor (and session) come from the request's cookies; a
        request without them records the payment unattributed. An invalid payment follows the
        tracker's ``strict`` rule. Returns True when the payment was accepted for delivery (or
        will be, at commit: *on_commit* as for goals, Django only).
        """
        if visitor_id is None:
            self.is_bot  # noqa: B018 - reads the cookies (a bot's visitor is not attributed)
            visitor = self._visitor
            if visitor is not None:
                visitor_id = visitor.visitor_id
                session_id = visitor.session_id if session_id is None else session_id
        payment = self.adapter.tracker.make_payment(
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
        at_commit = self.adapter.at_commit(on_commit)
        if at_commit is None:
            return self.send_payment(payment)
        at_commit(functools.partial(self._send_payment_at_commit, payment))
        return True

    def send_payment(self, payment: Payment) -> bool:
        """Hand a validated payment to the tracker; ``payment_tracked`` if it was taken."""
        tracker = self.adapter.tracker
        sent = tracker.submit(payment)
        if sent:
            self.tracked += 1
            signals = self.adapter.signals
            if signals.signals["payment_tracked"].receivers:
                visitor = None
                if payment.visitor_id is not None:
                    visitor = Visitor(payment.visitor_id, payment.session_id)
                signals.payment_tracked(tracker, payment, visitor, self.request)
        return sent

    def _send_payment_at_commit(self, payment: Payment) -> None:
        try:
            self.send_payment(payment)
        except Exception:  # the commit has happened: nothing must raise into its caller
            logger.exception(
                "goaltrack: %s from a transaction's commit was not tracked (%s)",
                payment.label,
                self.describe(),
            )

    def _send_at_commit(self, goal: Goal, name: str, metadata: Metadata | None) -> None:
        try:
            self.send(goal, name, metadata)
        except Exception:  # the commit has happened: nothing must raise into its caller
            log_untracked(name, "a transaction's commit", self.describe())

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} visitor={self.visitor!r} is_bot={self.is_bot!r} "
            f"tracked={self.tracked}>"
        )


def goals_outside_a_request(adapter: Adapter) -> RequestGoals:
    """Goals for code outside a request (a job, a signal from a command): the bound visitor."""
    goals = RequestGoals(adapter, adapter.tracker.provider)
    goals.read_already(current_visitor(), False)
    return goals
