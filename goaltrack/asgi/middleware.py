"""``GoalTrackMiddleware``: pure ASGI, the visitor of each HTTP request, the flushes.

It reads the visitor from the raw ``Cookie`` header once per HTTP request (and whether the
User-Agent is a known bot), publishes it in ``scope["state"]["goaltrack_visitor"]``, binds the
request's :class:`RequestGoals` for :func:`goaltrack.context.current_visitor`, and flushes at
the end of a request that tracked goals (``flush_at_request_end``) and at lifespan shutdown.
Its tracker is built by :func:`goaltrack.startup.build_tracker`: nothing here raises for a
configuration, and nothing depends on the lifespan having run.
Per-request state stays in locals and the scope; nothing here needs Starlette.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from goaltrack import context
from goaltrack.adapter import Adapter
from goaltrack.asgi.proxy import ScriptProxyApp
from goaltrack.asgi.signals import signals
from goaltrack.bots import request_is_bot
from goaltrack.context import bind_visitor, unbind_visitor
from goaltrack.cookies import HeaderReader, Visitor, header_reader
from goaltrack.delivery import InvalidConfiguration
from goaltrack.options import parse_bool
from goaltrack.providers import Provider
from goaltrack.script_proxy import TrustedProxies, Upstream, upstream_for
from goaltrack.startup import (
    MisconfiguredTracker,
    build_tracker,
    describe_problems,
    read_adapter_options,
)
from goaltrack.tracker import GoalTracker, get_tracker

__all__ = ["SCOPE_KEY", "STATE_KEY", "GoalTrackMiddleware", "RequestGoals", "request_goals"]

logger = logging.getLogger("goaltrack")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Loose on purpose: frameworks type their scope differently (Django: ``dict[str, Any]``).
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

#: The scope key marking a request the middleware handles; its value is the RequestGoals.
SCOPE_KEY = "goaltrack"
#: Where the visitor is published for the app: ``scope["state"][STATE_KEY]``
#: (``request.state.goaltrack_visitor`` in Starlette).
STATE_KEY = "goaltrack_visitor"

# ---- the request's goals ---------------------------------------------------------------------


class RequestGoals(context.RequestGoals):
    """One HTTP request's goals: what ``GoalTrackerDep`` hands an endpoint.

    ``track`` never waits for the network; it raises :class:`goaltrack.InvalidGoal` for a goal
    the provider would refuse, and returns False when nothing was sent (a bot, or no visitor
    cookie for a provider that needs one). ``request`` is the ASGI scope, while it is handled.
    """

    __slots__ = ("scope",)

    def __init__(
        self,
        request_adapter: Adapter,
        provider: Provider,
        scope: Scope,
        visitor: Visitor | None,
        bot: bool,
    ) -> None:
        context.RequestGoals.__init__(self, request_adapter, provider)
        self.read_already(visitor, bot)  # the scope's state shows the visitor
        self.scope: Scope | None = scope

    @property
    def request(self) -> Scope | None:
        return self.scope

    def describe(self) -> str:
        scope = self.scope
        return "" if scope is None else str(scope.get("path", ""))


def request_goals(request_or_scope: Any) -> context.RequestGoals:
    scope = getattr(request_or_scope, "scope", request_or_scope)
    goals = scope.get(SCOPE_KEY) if isinstance(scope, Mapping) else None
    if goals is None:
        raise RuntimeError(
            "goaltrack: this request did not pass through GoalTrackMiddleware; add it with "
            "app.add_middleware(GoalTrackMiddleware, ...) or app = GoalTrackMiddleware(app, ...)"
        )
    return goals  # type: ignore[no-any-return]


# ---- the middleware ----------------------------------------------------------------------------


class GoalTrackMiddleware:
    """Pure ASGI middleware: binds each HTTP request's goals, flushes at request end and shutdown.

    ``app.add_middleware(GoalTrackMiddleware, api_key=..., provider="flowsery")`` or
    ``app = GoalTrackMiddleware(app, api_key=...)``. Websocket scopes pass through untouched;
    responses are never wrapped (but for ``flush_at_request_end``, which holds back the last
    chunk of a request that tracked goals until they are delivered).

    Its keyword arguments are goaltrack's options (:data:`goaltrack.options.TABLE`), with the
    meaning they have in every adapter; None (or not given): the ``GOALTRACK_*`` environment
    variable, else the option's default. ``skip_bots``, ``flush_at_request_end`` and the script
    tag's ``tracking_id`` and ``domain`` (:func:`goaltrack.asgi.script_global`) are the
    middleware's own; the account, ``on_delivery`` / ``on_failure`` / ``on_drop`` and any other
    ``GoalTracker`` option configure the tracker the middleware builds.

    ``script_proxy=True`` makes it answer ``GET <script_proxy_prefix>/script.js`` and
    ``POST <script_proxy_prefix>/events`` itself (:mod:`goaltrack.asgi.proxy`), every other
    request passing through; ``script_proxy_upstream`` gives the script and events URLs (needed
    for Faurya and Flowsery; while goals go to the bundled fake API, its stand-in script),
    ``trusted_proxies`` the addresses or networks of the reverse proxies whose
    ``X-Forwarded-For`` names the visitor (none by default).

    ``debug=True`` is development mode (and the tracker's ``debug`` option): goals are strict
    unless ``strict`` is given, and a configuration that cannot work fails the lifespan startup
    (and, under a server without lifespan, every tracking call) with its ids. Otherwise such a
    configuration is logged once and tracking is disabled; the app always starts and serves,
    and its own lifespan runs whatever goaltrack's setup says.
    """

    def __init__(
        self,
        app: ASGIApp,  # by keyword too: Starlette before 0.38 builds middleware with app=
        *,
        api_key: str | None = None,
        provider: str | Provider | None = None,
        api_url: str | None = None,
        website_id: str | None = None,
        tracker: GoalTracker | None = None,
        skip_bots: bool | str | None = None,
        flush_at_request_end: bool | float | str | None = None,
        tracking_id: str | None = None,
        domain: str | None = None,
        script_proxy: bool | str | None = None,
        script_proxy_prefix: str | None = None,
        script_proxy_upstream: Upstream | None = None,
        trusted_proxies: Iterable[str] | str | None = None,
        debug: bool | str = False,
        **tracker_options: Any,
    ) -> None:
        self.app = app
        self._reader: HeaderReader | None = None  # the tracker's provider's, built on first use
        account = {"api_key": api_key, "provider": provider, "api_url": api_url}
        given = {
            name: value
            for name, value in {**account, "website_id": website_id, **tracker_options}.items()
            if value is not None
        }
        if tracker is not None and given:
            raise TypeError(
                "GoalTrackMiddleware: pass either tracker= or tracker arguments "
                f"({', '.join(sorted(given))})"
            )
        if debug and tracker is None:
            given["debug"] = debug  # the tracker's debug option too
        try:
            self.debug = parse_bool("debug", debug)
        except InvalidConfiguration:
            self.debug = False  # the tracker's setup reports the value
        values = {
            **given,
            "skip_bots": skip_bots,
            "flush_at_request_end": flush_at_request_end,
            "tracking_id": tracking_id,
            "domain": domain,
            "script_proxy": script_proxy,
            "script_proxy_prefix": script_proxy_prefix,
            "trusted_proxies": trusted_proxies,
        }
        # Never raises for the configuration (goaltrack.startup): Starlette builds its
        # middleware on the first ASGI call, where an exception would fail every request.
        source = "GoalTrackMiddleware's configuration"
        if tracker is None and given:
            setup = build_tracker(
                values,
                development=self.debug,
                source=source,
                check_command="goaltrack check",
            )
            tracker, settings, problems = setup.tracker, setup.settings, setup.problems
        else:
            # Without a tracker of its own: the process-wide one, looked up per request.
            options = read_adapter_options(values, source=source, check_command="goaltrack check")
            settings, problems = options.settings, options.problems
        self._setup_error = describe_problems(source, problems) if problems else None
        self.adapter = Adapter(
            signals,
            tracker,
            skip_bots=settings.skip_bots,
            flush_at_request_end=settings.flush_at_request_end,
        )
        self._tracker = tracker
        # Read on every request: plain attributes, not the adapter's properties.
        self.skip_bots = settings.skip_bots
        self._flush_at_request_end = settings.flush_at_request_end
        # The script tag's (goaltrack.asgi.script_global): not tracker arguments.
        self.tracking_id = settings.tracking_id
        self.domain = settings.domain
        self.script_proxy = settings.script_proxy
        self.script_proxy_prefix = settings.script_proxy_prefix
        self._proxy_upstream = script_proxy_upstream
        self._trusted_proxies = TrustedProxies(settings.trusted_proxies)
        self._proxy: ScriptProxyApp | None = None
        self._said_proxy_error = False

    def _script_proxy(self) -> ScriptProxyApp:
        """The script proxy, for the provider of the tracker in use; raises
        :class:`~goaltrack.InvalidConfiguration` when its upstream URLs are unknown."""
        tracker = self.tracker
        upstream = upstream_for(tracker.provider, self._proxy_upstream, api_url=tracker.api_url)
        proxy = self._proxy
        if proxy is None or proxy.upstream != upstream:
            proxy = self._proxy = ScriptProxyApp(
                upstream, self.script_proxy_prefix, trusted_proxies=self._trusted_proxies
            )
        return proxy

    @property
    def tracker(self) -> GoalTracker:
        """The tracker in use: the middleware's own, or the process-wide one."""
        return self._tracker or get_tracker()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http" or SCOPE_KEY in scope:
            if scope_type == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if self.script_proxy and scope["path"].startswith(self.script_proxy_prefix):
            try:
                proxy = self._script_proxy()
            except InvalidConfiguration as exc:
                if not self._said_proxy_error:  # once, not on every request for the script
                    self._said_proxy_error = True
                    logger.error("goaltrack: the script proxy cannot run: %s", exc)
                proxy = None
            if proxy is not None and proxy.handles(scope):
                await proxy(scope, receive, send)
                return

        tracker = self._tracker or get_tracker()
        cookie = user_agent = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                # HTTP/2 clients may split cookies over several headers.
                cookie = value if cookie is None else cookie + b"; " + value
            elif name == b"user-agent":
                user_agent = value
        provider = tracker.provider
        visitor = None
        if cookie is not None:
            reader = self._reader
            if reader is None or reader.provider is not provider:
                reader = self._reader = header_reader(provider)
            # Encoded cookie names, id checks on the matched values only: no header decoding.
            visitor = reader.visitor(cookie)
        bot = request_is_bot(user_agent, visitor, provider, skip_bots=self.skip_bots)
        if bot:
            visitor = None
        goals = RequestGoals(self.adapter, provider, scope, visitor, bot)
        scope[SCOPE_KEY] = goals
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[STATE_KEY] = visitor

        token = bind_visitor(goals)
        try:
            if self._flush_at_request_end is None and tracker.platform is None:
                await self.app(scope, receive, send)
            else:
                await self._call_then_flush(goals, scope, receive, send)
        finally:
            unbind_visitor(token)
            # scope -> goals -> scope is a cycle: break it so the request is freed at once,
            # not by the garbage collector.
            goals.scope = None

    async def _call_then_flush(
        self, goals: RequestGoals, scope: Scope, receive: Receive, send: Send
    ) -> None:
        flushed = 0  # goals.tracked when last flushed

        async def send_after_flush(message: Message) -> None:
            nonlocal flushed
            last_chunk = message["type"] == "http.response.body" and not message.get("more_body")
            if last_chunk and goals.tracked > flushed:
                flushed = goals.tracked
                await self.adapter.aflush_after(goals, scope)
            await send(message)

        await self.app(scope, receive, send_after_flush)
        if goals.tracked > flushed:  # tracked after the response (background tasks)
            await self.adapter.aflush_after(goals, scope)

    # -- lifespan

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every lifespan message goes through to the app: its own startup runs whatever
        # goaltrack's setup says.
        app_speaks_lifespan = False

        async def lifespan_receive() -> Message:
            nonlocal app_speaks_lifespan
            app_speaks_lifespan = True
            return await receive()

        async def lifespan_send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                refused = self._startup()
                if refused is not None:
                    message = {"type": "lifespan.startup.failed", "message": refused}
            # After the app's own shutdown code, so that goals it tracks are flushed too.
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._flush_at_shutdown()
            await send(message)

        try:
            await self.app(scope, lifespan_receive, lifespan_send)
        except Exception:
            if app_speaks_lifespan:
                raise
            # Django's ASGI handler, for one, refuses lifespan scopes.
            logger.debug(
                "the app does not handle lifespan; GoalTrackMiddleware does", exc_info=True
            )
        else:
            if app_speaks_lifespan:
                return
        await self._serve_lifespan(receive, send)

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                refused = self._startup()
                if refused is not None:
                    await send({"type": "lifespan.startup.failed", "message": refused})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._flush_at_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _startup(self) -> str | None:
        """At lifespan startup: with ``debug=True``, why the app must not start (a setup
        error, with its ids), else None. Nothing else depends on the lifespan having run."""
        tracker = self.tracker
        logger.debug("goaltrack ready: %r", tracker)
        proxy_error = None
        if self.script_proxy:
            try:
                self._script_proxy()
            except InvalidConfiguration as exc:
                proxy_error = str(exc)
                logger.error("goaltrack: %s", proxy_error)
        if proxy_error is not None and self.debug:
            return f"goaltrack: {proxy_error}"
        if not self.debug:
            return None
        if self._setup_error is not None:
            return f"goaltrack: {self._setup_error}"
        if isinstance(tracker, MisconfiguredTracker):
            return f"goaltrack: {tracker.error}"
        return None

    async def _flush_at_shutdown(self) -> None:
        if self._proxy is not None:
            await self._proxy.aclose()
        tracker = self.tracker
        timeout = tracker.options.shutdown_timeout
        try:
            flushed = await tracker.aflush(timeout)
        except Exception:
            logger.exception("goaltrack: flushing goals at shutdown failed")
            return
        if not flushed:
            # The exit report (goaltrack.process.report_exit) says what became of them, in the same
            # words for every adapter and server: no second sentence here.
            logger.debug(
                "goaltrack: %d goal(s) still pending after %g s at lifespan shutdown",
                tracker.stats.pending,
                timeout,
            )
