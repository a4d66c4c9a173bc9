"""Framework-neutral helpers the adapters share, so each adapter stays a thin file.

- the current visitor, one ContextVar for every adapter (set per request by the middleware, to a
  visitor or to a :class:`VisitorSource` that reads the cookies only if someone asks);
- bot detection by User-Agent (known crawlers get no goals: the providers refuse bots);
- decorator helpers: goal-name precheck at import, metadata from a mapping or a callable, and the
  rule that only successful responses (status < 400) count.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from goaltrack.cookies import Visitor
from goaltrack.goals import Goal, InvalidGoal, MetadataValue
from goaltrack.providers import PROVIDERS

__all__ = [
    "MetadataArg",
    "VisitorSource",
    "bind_visitor",
    "current_visitor",
    "is_bot",
    "is_success",
    "precheck_goal_name",
    "resolve_metadata",
    "unbind_visitor",
]

Metadata = Mapping[str, MetadataValue]
#: What decorators accept as ``metadata=``: a mapping, or a callable building one per request.
MetadataArg = Metadata | Callable[..., Metadata | None] | None


class VisitorSource:
    """A request's visitor, read from its cookies only when first asked for.

    Middleware binds one of these instead of a :class:`Visitor`, so that a request whose code
    never tracks a goal never pays for cookie parsing and id validation.
    """

    __slots__ = ()

    @property
    def visitor(self) -> Visitor | None:
        raise NotImplementedError


_current_visitor: ContextVar[Visitor | VisitorSource | None] = ContextVar(
    "goaltrack_visitor", default=None
)

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


def is_bot(user_agent: str | None) -> bool:
    """True for known crawlers and uptime monitors (by User-Agent); False when there is none."""
    if not user_agent:
        return False
    if len(user_agent) > _MAX_CACHED_USER_AGENT:
        return _is_bot_user_agent.__wrapped__(user_agent)  # no giant strings in the cache
    return _is_bot_user_agent(user_agent)


_MAX_CACHED_USER_AGENT = 512


@functools.lru_cache(maxsize=2048)  # a site sees few distinct User-Agents, over and over
def _is_bot_user_agent(user_agent: str) -> bool:
    lowered = user_agent.lower()
    if "bot" in lowered and _BOT_WORD.search(lowered):
        return True
    return any(token in lowered for token in _BOT_TOKENS)


def precheck_goal_name(name: object) -> None:
    """Raise :class:`InvalidGoal` now if no provider could accept *name* (decorators, at import).

    The provider may not be configured yet at import time; the full check with the configured
    provider's rules runs again at request time.
    """
    errors: list[InvalidGoal] = []
    for provider in PROVIDERS.values():
        try:
            Goal.create(provider, name, require_visitor=False)  # type: ignore[arg-type]
        except InvalidGoal as exc:
            errors.append(exc)
        else:
            return
    raise errors[0]


def resolve_metadata(metadata: MetadataArg, *args: Any) -> Metadata | None:
    """The metadata for one request: *metadata* itself, or what calling it with *args* returns."""
    if metadata is None or isinstance(metadata, Mapping):
        return metadata
    return metadata(*args)


def is_success(status: int | None) -> bool:
    """Decorated views track only when they answered with a status below 400."""
    return status is not None and status < 400
