"""The bot rule, once for every adapter: known crawlers and monitors get no goals.

:func:`is_bot` says whether a User-Agent is a known crawler or uptime monitor (one bounded
cache, text or raw header bytes); :func:`request_is_bot` is the rule an adapter applies to a
request: with ``skip_bots`` on, a request from a bot tracks nothing (the providers refuse bots).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goaltrack.cookies import Visitor
    from goaltrack.providers import Provider

__all__ = ["is_bot", "request_is_bot"]

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


def request_is_bot(
    user_agent: str | bytes | None,
    visitor: Visitor | None,
    provider: Provider,
    *,
    skip_bots: bool,
) -> bool:
    """Whether a request tracks nothing because it comes from a bot (its visitor is then ignored).

    Only with ``skip_bots`` on, and only when it matters: without a visitor, a provider that
    needs one gets nothing anyway, so the User-Agent is not even looked at.
    """
    return (
        skip_bots
        and user_agent is not None
        and (visitor is not None or not provider.visitor_required)
        and is_bot(user_agent)
    )
