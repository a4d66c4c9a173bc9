"""The adapter contract, written once: what the Django, Flask and ASGI adapters share.

An adapter only connects its framework to what is here:

- the current visitor: one ContextVar for every adapter, bound per request (to a visitor, or to a
  :class:`VisitorSource` that reads the cookies only if someone asks);
- the bot rule: known crawlers get no goals (the providers refuse them); one bounded cache;
- :class:`RequestGoals`: one request as goaltrack sees it (visitor, bot, goals tracked) and the
  direct call ``track()``, under the tracker's ``strict`` rule for invalid goals (raise
  :class:`~goaltrack.InvalidGoal`, or repair or refuse with a log line naming the caller's line)
  and never raising anything else; with ``debug``, a goal not sent says why;
- :class:`GoalSpec`: a goal asked for ahead of time, by a decorator or a signal connection. A
  decorated view counts a conversion: by default a POST, PUT, PATCH or DELETE answered below
  400 (never when it raised), else ``methods=``; ``when`` can still say no. Its ``metadata`` and
  ``when`` callables get the arguments they declare, by name (:class:`DeclaredCall`), checked
  against the names that can ever be given when the spec is applied; whatever goes wrong at
  request time is logged with the goal's name and never reaches the view or the code that sent
  the signal: the response is the one the view gave;
- :class:`Adapter`: one installed adapter's tracker, request options and signals, with the flush
  at the end of a request that tracked goals;
- :func:`read_settings`: every option, with one meaning, converted from strings alike.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import logging
import re
import sys
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar, Token
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from goaltrack.config import coerce_option, parse_bool, parse_flush_at_request_end
from goaltrack.cookies import Visitor, visitor_from_cookies
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.hooks import SignalSet
from goaltrack.providers import PROVIDERS, Provider
from goaltrack.tracker import GoalTracker, TrackerOptions, call_site, caller_location, get_tracker

__all__ = [
    "Adapter",
    "AdapterSettings",
    "DeclaredCall",
    "GoalSpec",
    "Metadata",
    "MetadataArg",
    "RequestGoals",
    "VisitorSource",
    "bind_visitor",
    "current_goals",
    "current_visitor",
    "is_bot",
    "is_success",
    "log_untracked",
    "read_settings",
    "unbind_visitor",
]

logger = logging.getLogger("goaltrack")

Metadata = Mapping[str, MetadataValue]
#: What decorators accept as ``metadata=``: a mapping, or a callable building one per request.
MetadataArg = Metadata | Callable[..., Metadata | None] | None

# -- the current visitor -------------------------------------------------------------------------


class VisitorSource:
    """A request's visitor, read from its cookies only when first asked for.

    Middleware binds one of these instead of a :class:`~goaltrack.Visitor`, so that a request
    whose code never tracks a goal never pays for cookie parsing and id validation.
    """

    __slots__ = ()

    @property
    def visitor(self) -> Visitor | None:
        raise NotImplementedError


_current_visitor: ContextVar[Visitor | VisitorSource | None] = ContextVar(
    "goaltrack_visitor", default=None
)


def current_visitor() -> Visitor | None:
    """The visitor of the request being handled (set by a goaltrack middleware), or None."""
    bound = _current_visitor.get()
    if isinstance(bound, VisitorSource):
        return bound.visitor
    return bound


def bind_visitor(visitor: Visitor | VisitorSource | None) -> Token[Visitor | VisitorSource | None]:
    """Make *visitor* the current one; pass the token to :func:`unbind_visitor` afterwards.

    A :class:`VisitorSource` is asked for its visitor only when :func:`current_visitor` is called.
    """
    return _current_visitor.set(visitor)


def unbind_visitor(token: Token[Visitor | VisitorSource | None]) -> None:
    _current_visitor.reset(token)


def current_goals() -> RequestGoals | None:
    """The :class:`RequestGoals` a middleware bound for the request being handled, or None."""
    bound = _current_visitor.get()
    return bound if isinstance(bound, RequestGoals) else None


# -- bots ----------------------------------------------------------------------------------------

# Crawlers and monitors only. HTTP libraries are not here on purpose: mobile apps (okhttp) and
# API clients are real visitors, and so are test clients. Matched on the lower-cased User-Agent
# with plain substring tests: one big case-insensitive regex costs tens of microseconds a call.
_BOT_WORD = re.compile(r"bot\b")
_BOT_TOKENS = (
    "bot/",
    "crawl",
    "spider",
    "slurp",
    "bingpreview",
    "facebookexternalhit",
    "embedly",
    "quora link preview",
    "phantomjs",
    "lighthouse",
    "pingdom",
    "uptimerobot",
    "statuscake",
    "scrapy",
    "semrush",
    "ahrefs",
    "mj12",
    "dotbot",
    "petalbot",
    "bytespider",
    "gptbot",
    "ccbot",
    "claudebot",
    "perplexitybot",
    "applebot",
    "yandex",
    "baiduspider",
    "duckduckbot",
    "sogou",
    "exabot",
    "ia_archiver",
)
_MAX_CACHED_USER_AGENT = 512


def is_bot(user_agent: str | bytes | None) -> bool:
    """True for known crawlers and uptime monitors (by User-Agent); False when there is none.

    Takes the header as text (WSGI) or as raw bytes (ASGI: a header seen before is not even
    decoded). Ordinary User-Agents are remembered; giant ones are not.
    """
    if not user_agent:
        return False
    if len(user_agent) > _MAX_CACHED_USER_AGENT:
        return _is_bot_user_agent.__wrapped__(user_agent)
    return _is_bot_user_agent(user_agent)


@functools.lru_cache(maxsize=2048)  # a site sees few distinct User-Agents, over and over
def _is_bot_user_agent(user_agent: str | bytes) -> bool:
    text = user_agent.decode("latin-1") if isinstance(user_agent, bytes) else user_agent
    lowered = text.lower()
    if "bot" in lowered and _BOT_WORD.search(lowered):
        return True
    return any(token in lowered for token in _BOT_TOKENS)


def is_success(status: int | None) -> bool:
    """Decorated views track only when they answered with a status below 400."""
    return status is not None and status < 400


# -- user callables ------------------------------------------------------------------------------


class DeclaredCall:
    """A user's callable, called with the arguments it declares, each by its name.

    ``call(named)`` passes the values of *named* whose names the callable declares (all of them
    to a ``**kwargs``); nothing is passed by position, so ``lambda user, request: ...`` on
    ``user_logged_in`` gets the user as ``user`` and the sender only as a parameter named
    ``sender``. Built with the names that can ever be given (*available*; None: not known), a
    callable declaring any other name is a TypeError at once, naming what it could take.
    """

    __slots__ = ("_keywords", "_positional_only", "_var_keyword", "func")

    def __init__(
        self,
        func: Callable[..., Any],
        available: Collection[str] | None = None,
        *,
        what: str = "the callable",
    ) -> None:
        self.func = func
        try:
            parameters = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # no signature to read (some builtins): pass everything
            self._positional_only: tuple[str, ...] = ()
            self._keywords: tuple[str, ...] = ()
            self._var_keyword = True
            return
        kinds = inspect.Parameter
        self._positional_only = tuple(p.name for p in parameters if p.kind is kinds.POSITIONAL_ONLY)
        self._keywords = tuple(
            p.name
            for p in parameters
            if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        )
        self._var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in parameters)
        if available is not None:
            unknown = [
                name for name in (*self._positional_only, *self._keywords) if name not in available
            ]
            if unknown:
                raise TypeError(
                    f"{what} declares {', '.join(map(repr, unknown))}, which it is never given: "
                    f"arguments are passed by name, and the names it can take are "
                    f"{', '.join(sorted(available))} (or **kwargs)"
                )

    def __call__(self, named: Mapping[str, Any]) -> Any:
        positional_only = self._positional_only
        args = [named[name] for name in positional_only if name in named]
        if self._var_keyword:
            kwargs = {key: value for key, value in named.items() if key not in positional_only}
        else:
            kwargs = {key: named[key] for key in self._keywords if key in named}
        return self.func(*args, **kwargs)


def log_untracked(name: str, origin: str, detail: str = "") -> None:
    """The catch-all rule's log line, from inside an ``except`` block: the goal was not tracked."""
    logger.error(
        "goaltrack: goal %r from %s was not tracked%s",
        name,
        origin,
        f" ({detail})" if detail else "",
        exc_info=True,
    )


# -- one adapter ---------------------------------------------------------------------------------


class Adapter:
    """One installed adapter: where its tracker is, its request options, and its signals.

    ``tracker`` is the adapter's own (a Flask app's, a middleware's) or, when it has none, the
    process-wide one, looked up on each use so that ``goaltrack.configure()`` may come later.
    """

    def __init__(
        self,
        signals: SignalSet,
        tracker: GoalTracker | None = None,
        *,
        skip_bots: bool = True,
        flush_at_request_end: float | None = None,
    ) -> None:
        self.signals = signals
        self._tracker = tracker
        self._skip_bots = skip_bots
        self._flush_at_request_end = flush_at_request_end

    @property
    def tracker(self) -> GoalTracker:
        return self._tracker or get_tracker()

    @property
    def skip_bots(self) -> bool:
        """Requests from known crawlers track nothing."""
        return self._skip_bots

    @property
    def flush_at_request_end(self) -> float | None:
        """Seconds a request that tracked goals waits for them at its end; None: no waiting."""
        return self._flush_at_request_end

    def flush_after(self, goals: RequestGoals | None) -> None:
        """``flush_at_request_end``: wait for the goals of a request that tracked any."""
        timeout = self._flush_timeout(goals)
        if timeout is not None:
            _flush(self.tracker, timeout)

    async def aflush_after(self, goals: RequestGoals | None) -> None:
        """:meth:`flush_after` for async code: waits in a worker thread, not on the event loop."""
        timeout = self._flush_timeout(goals)
        if timeout is not None:
            await asyncio.to_thread(_flush, self.tracker, timeout)

    def _flush_timeout(self, goals: RequestGoals | None) -> float | None:
        return None if goals is None or not goals.tracked else self.flush_at_request_end


def _flush(tracker: GoalTracker, timeout: float) -> None:
    try:
        flushed = tracker.flush(timeout)
    except Exception:
        logger.exception("goaltrack: flushing goals at the end of a request failed")
        return
    if not flushed:
        logger.warning(
            "goaltrack: %d goal(s) still pending after %g s at the end of a request",
            tracker.stats.pending,
            timeout,
        )


# -- one request ---------------------------------------------------------------------------------


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
        # Without a visitor a provider that needs one gets nothing anyway: no need to ask.
        bot = (
            self.adapter.skip_bots
            and (visitor is not None or not provider.visitor_required)
            and is_bot(self._user_agent)
        )
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
        goal = self.prepare(name, metadata, description, timezone)
        return False if goal is None else self.send(goal, name, metadata)

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
            if signals.signals["tracked"].receivers:
                signals.tracked(tracker, name, self._visitor, metadata, self.request)
        return sent

    def track_spec(self, spec: GoalSpec, metadata: Metadata | None) -> None:
        """Track a decorator's or signal connection's goal (adapters add their options here)."""
        self.track(spec.name, metadata, description=spec.description, timezone=spec.timezone)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} visitor={self.visitor!r} is_bot={self.is_bot!r} "
            f"tracked={self.tracked}>"
        )


def goals_outside_a_request(adapter: Adapter) -> RequestGoals:
    """Goals for code outside a request (a job, a signal from a command): the bound visitor."""
    tracker = adapter.tracker
    goals = RequestGoals(adapter, tracker.provider)
    goals.read_already(current_visitor(), False)
    return goals


# -- goals asked for ahead of time ---------------------------------------------------------------


#: What the decorators count by default: requests that change something, not pages shown.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class GoalSpec:
    """A goal a decorator or a signal connection will track: checked when it is made.

    The name (against every provider's rules: the provider may not be configured yet), literal
    metadata, ``description`` and ``timezone`` raise :class:`~goaltrack.InvalidGoal` now; the
    configured provider's rules apply again when the goal is tracked. :meth:`with_arguments`
    then checks that the ``metadata`` and ``when`` callables declare only names they can be
    given. ``origin`` is where the goal was declared (``file:line``), for log lines.
    """

    name: str
    metadata: MetadataArg = None
    description: str | None = None
    timezone: str | None = None
    on_commit: bool | None = None
    """Django: send only once the current transaction commits (None: the setting)."""
    methods: Collection[str] | None = None
    """Decorators: the HTTP methods that count (None: POST, PUT, PATCH and DELETE)."""
    when: Callable[..., object] | None = None
    """Called with the arguments it declares (by name): a false result skips the goal."""
    origin: str = field(default="", compare=False)
    _metadata_call: DeclaredCall | None = field(default=None, init=False, repr=False, compare=False)
    _when_call: DeclaredCall | None = field(default=None, init=False, repr=False, compare=False)
    _methods: frozenset[str] = field(default=UNSAFE_METHODS, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        precheck_goal_name(self.name)
        metadata = self.metadata
        if callable(metadata) and not isinstance(metadata, Mapping):
            object.__setattr__(self, "_metadata_call", DeclaredCall(metadata))
        elif metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidGoal(
                f"metadata must be a mapping or a callable, got {type(metadata).__name__}",
                field="metadata",
                rule="metadata is a flat object",
            )
        if self.when is not None:
            if not callable(self.when):
                raise TypeError(f"when must be a callable, not {type(self.when).__name__}")
            object.__setattr__(self, "_when_call", DeclaredCall(self.when))
        if self.methods is not None:
            if isinstance(self.methods, str) or not all(
                isinstance(method, str) for method in self.methods
            ):
                raise TypeError(
                    f'methods is a list of HTTP methods, e.g. ["GET"]: {self.methods!r}'
                )
            object.__setattr__(self, "_methods", frozenset(m.upper() for m in self.methods))
        if not self.origin:
            # Past this method and the dataclass's generated __init__ (file "<string>").
            object.__setattr__(self, "origin", caller_location(skip=3))
        # Metadata rules are the same for every provider; each field is checked with a provider
        # that takes it.
        Goal.create(
            PROVIDERS["flowsery"],
            "check",
            metadata=metadata if isinstance(metadata, Mapping) else None,
            timezone=self.timezone,
            require_visitor=False,
        )
        if self.description is not None:
            Goal.create(
                PROVIDERS["datafast"],
                "check",
                description=self.description,
                require_visitor=False,
            )

    def with_arguments(self, available: Collection[str] | None, where: str) -> GoalSpec:
        """This spec, its callables checked against the names they can be given (*available*;
        None: unknown, any name goes). Raises TypeError naming *where* and those names."""
        checked = copy.copy(self)
        for attribute, option in (("_metadata_call", "metadata"), ("_when_call", "when")):
            call: DeclaredCall | None = getattr(self, attribute)
            if call is not None:
                what = f"{where}: {option}={_callable_name(call.func)}"
                object.__setattr__(
                    checked, attribute, DeclaredCall(call.func, available, what=what)
                )
        return checked

    def metadata_for(self, named: Mapping[str, Any]) -> Metadata | None:
        """The metadata for one request or signal: the mapping, or what the callable returns."""
        call = self._metadata_call
        if call is None:
            return self.metadata  # type: ignore[return-value]
        return call(named)  # type: ignore[no-any-return]

    def counts(self, method: str | None, status: int | None) -> bool:
        """The decorator rule before ``when``: a counted method, a status below 400."""
        if status is None or status >= 400:
            logger.debug("goaltrack: goal %r not tracked: the view answered %s", self.name, status)
            return False
        if method is not None and method not in self._methods:  # None: not known (no scope)
            logger.debug(
                "goaltrack: goal %r not tracked: %s is not one of the methods that count (%s)",
                self.name,
                method,
                ", ".join(sorted(self._methods)),
            )
            return False
        return True

    def track_after_view(
        self,
        goals_for: Callable[[], RequestGoals | None],
        method: str | None,
        status: int | None,
        named: Mapping[str, Any],
    ) -> None:
        """The decorator rule: track for a counted method when the view answered below 400 and
        ``when`` (if any) agrees; never raise.

        Called only once the view returned (a view that raised tracks nothing). *goals_for*
        finds the request's goals (the adapter's glue); *named* holds what the ``metadata`` and
        ``when`` callables may receive, by name.
        """
        if not self.counts(method, status):
            return
        goals = None
        try:
            when = self._when_call
            if when is not None and not when(named):
                logger.debug("goaltrack: goal %r not tracked: when= said no", self.name)
                return
            goals = goals_for()
            if goals is None:
                logger.error(
                    "goaltrack: goal %r from a decorated view was not tracked: the request did "
                    "not go through goaltrack (is its middleware or extension installed?)",
                    self.name,
                )
                return
            self._track(goals, named)
        except Exception:
            log_untracked(self.name, "a decorated view", goals.describe() if goals else "")

    def _track(self, goals: RequestGoals, named: Mapping[str, Any]) -> None:
        token = call_site.set(self.origin)
        try:
            goals.track_spec(self, self.metadata_for(named))
        finally:
            call_site.reset(token)

    def signal_receiver(
        self, goals_for: Callable[[object, Mapping[str, Any]], RequestGoals | None]
    ) -> Callable[..., None]:
        """A receiver tracking this goal each time a signal is sent; it never raises.

        ``when`` and ``metadata`` get the signal's keyword arguments by name (the sender as
        ``sender``); *goals_for* finds the request's goals for the signal (the adapter's glue),
        or None to skip it.
        """
        spec = self

        def receiver(sender: object, **kwargs: Any) -> None:
            try:
                named = {**kwargs, "sender": sender}
                when = spec._when_call
                if when is not None and not when(named):
                    logger.debug("goaltrack: goal %r not tracked: when= said no", spec.name)
                    return
                goals = goals_for(sender, kwargs)
                if goals is None:
                    logger.warning(
                        "goaltrack: goal %r from a signal was not tracked: it was sent outside "
                        "any app with goaltrack",
                        spec.name,
                    )
                    return
                spec._track(goals, named)
            except Exception:
                log_untracked(spec.name, "a signal", _describe_sender(sender))

        receiver.__name__ = receiver.__qualname__ = f"goaltrack_goal_{self.name}"
        return receiver


def view_arguments(view: Callable[..., Any], given: set[str]) -> frozenset[str] | None:
    """The names a decorated view's callables may declare: *given* and the view's parameters;
    None (any name) when the view takes ``**kwargs`` or has no signature to read."""
    try:
        parameters = inspect.signature(view).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(given | {p.name for p in parameters})


def _callable_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or type(func).__qualname__


#: The keyword arguments of well-known blinker signals (blinker signals do not declare them).
BLINKER_SIGNAL_ARGUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("flask.signals", "template_rendered"): ("template", "context"),
    ("flask.signals", "before_render_template"): ("template", "context"),
    ("flask.signals", "request_started"): (),
    ("flask.signals", "request_finished"): ("response",),
    ("flask.signals", "request_tearing_down"): ("exc",),
    ("flask.signals", "got_request_exception"): ("exception",),
    ("flask.signals", "appcontext_tearing_down"): ("exc",),
    ("flask.signals", "appcontext_pushed"): (),
    ("flask.signals", "appcontext_popped"): (),
    ("flask.signals", "message_flashed"): ("message", "category"),
    ("flask_login.signals", "user_logged_in"): ("user",),
    ("flask_login.signals", "user_logged_out"): ("user",),
    ("flask_login.signals", "user_loaded_from_cookie"): ("user",),
    ("flask_login.signals", "user_loaded_from_request"): ("user",),
    ("flask_login.signals", "user_login_confirmed"): (),
    ("flask_login.signals", "user_unauthorized"): (),
    ("flask_login.signals", "user_needs_refresh"): (),
    ("flask_login.signals", "user_accessed"): (),
    ("flask_login.signals", "session_protected"): (),
}


def signal_arguments(
    signal: object, table: Mapping[tuple[str, str], tuple[str, ...]]
) -> tuple[str, frozenset[str] | None]:
    """How to name *signal* in errors, and the names its receivers are given (``sender`` and
    its keyword arguments), from *table* (module, attribute) -> arguments; None: not known.

    Only modules already imported are looked at: a signal from one not imported is not in it.
    """
    for (module_name, attribute), arguments in table.items():
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, None) is signal:
            return f"{attribute}", frozenset({"sender", *arguments})
    name = getattr(signal, "name", None)
    return (name if isinstance(name, str) else type(signal).__name__), None


def _describe_sender(sender: object) -> str:
    if sender is None:
        return ""
    name = getattr(sender, "__qualname__", None) or type(sender).__qualname__
    return f"sender {name}"


def precheck_goal_name(name: object) -> None:
    """Raise :class:`~goaltrack.InvalidGoal` now if no provider could accept *name*."""
    errors: list[InvalidGoal] = []
    for provider in PROVIDERS.values():
        try:
            Goal.create(provider, name, require_visitor=False)  # type: ignore[arg-type]
        except InvalidGoal as exc:
            errors.append(exc)
        else:
            return
    raise errors[0]


# -- settings ------------------------------------------------------------------------------------

#: The account arguments of :class:`~goaltrack.GoalTracker`.
ACCOUNT_OPTIONS: dict[str, object] = {
    "api_key": None,
    "provider": "datafast",
    "api_url": None,
    "website_id": None,
}
#: The tracker's options (hooks included), with their defaults.
TRACKER_OPTIONS: dict[str, object] = {
    f.name: f.default for f in fields(TrackerOptions) if f.default is not MISSING
}
HOOK_OPTIONS = ("on_delivery", "on_failure", "on_drop")
#: What the adapters add: the same meaning in each.
ADAPTER_OPTIONS: dict[str, object] = {"skip_bots": True, "flush_at_request_end": False}
#: Every option an adapter reads, with its default.
OPTIONS: dict[str, object] = {**ACCOUNT_OPTIONS, **TRACKER_OPTIONS, **ADAPTER_OPTIONS}


@dataclass(frozen=True)
class AdapterSettings:
    """An adapter's options, converted and checked: what it builds its tracker and adapter with."""

    tracker_kwargs: dict[str, Any]
    """For ``GoalTracker(**...)`` / ``goaltrack.configure(**...)``: given options, hooks aside."""
    hooks: dict[str, Any]
    """The user's ``on_delivery`` / ``on_failure`` / ``on_drop`` (given ones only)."""
    skip_bots: bool = True
    """Requests from known crawlers track nothing."""
    flush_at_request_end: float | None = None
    """Seconds a request that tracked goals waits for their delivery before it ends; None: no
    waiting. For hosts that freeze the process once the response is sent (serverless)."""

    def check_tracker_options(self) -> None:
        """Raise for tracker options that cannot work, as ``GoalTracker(...)`` would."""
        given = {**self.tracker_kwargs, **self.hooks}
        TrackerOptions.from_options({k: v for k, v in given.items() if k in TRACKER_OPTIONS})


def read_settings(
    values: Mapping[str, object], label: Callable[[str], str] = str
) -> AdapterSettings:
    """:class:`AdapterSettings` from option values by name (``max_retries``, ``skip_bots``, ...).

    Strings are converted (``"false"``, ``"3"``, ``"0.5"``, ``"pkg.module:hook"``); None means not
    given. *label* spells a name as the user wrote it (``GOALTRACK_MAX_RETRIES``), for errors.
    Raises :class:`~goaltrack.InvalidConfiguration` for a value that cannot be converted, and
    TypeError for an unknown name.
    """
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown goaltrack option(s): {', '.join(map(label, unknown))}; "
            f"known: {', '.join(map(label, OPTIONS))}"
        )
    converted = {
        name: coerce_option(name, value, OPTIONS[name], label(name))
        for name, value in values.items()
        if value is not None
    }
    skip_bots = parse_bool(label("skip_bots"), converted.pop("skip_bots", True))
    flush = parse_flush_at_request_end(
        label("flush_at_request_end"), converted.pop("flush_at_request_end", None)
    )
    hooks = {name: converted.pop(name) for name in HOOK_OPTIONS if name in converted}
    return AdapterSettings(converted, hooks, skip_bots, flush)
