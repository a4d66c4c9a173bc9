"""The adapters' current visitor (goaltrack.adapter), bound directly or through a lazy source."""

from __future__ import annotations

from goaltrack import Visitor
from goaltrack.context import VisitorSource, bind_visitor, current_visitor, unbind_visitor

VISITOR = Visitor("0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21", None)


class CountingSource(VisitorSource):
    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked = 0

    @property
    def visitor(self) -> Visitor | None:
        self.asked += 1
        return VISITOR


def test_bind_a_visitor() -> None:
    assert current_visitor() is None
    token = bind_visitor(VISITOR)
    try:
        assert current_visitor() is VISITOR
    finally:
        unbind_visitor(token)
    assert current_visitor() is None


def test_bind_none_hides_an_outer_visitor() -> None:
    outer = bind_visitor(VISITOR)
    inner = bind_visitor(None)
    assert current_visitor() is None
    unbind_visitor(inner)
    assert current_visitor() is VISITOR
    unbind_visitor(outer)


def test_a_source_is_asked_only_when_the_visitor_is_wanted() -> None:
    source = CountingSource()
    token = bind_visitor(source)
    try:
        assert source.asked == 0
        assert current_visitor() is VISITOR
        assert source.asked == 1
    finally:
        unbind_visitor(token)
    assert current_visitor() is None


def test_bot_check_caches_ordinary_user_agents_but_not_giant_ones() -> None:
    from goaltrack.bots import _is_bot_user_agent, is_bot

    _is_bot_user_agent.cache_clear()
    browser = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
    assert is_bot(browser) is False
    assert is_bot("Mozilla/5.0 (compatible; Googlebot/2.1)") is True
    assert _is_bot_user_agent.cache_info().currsize == 2
    giant = "Mozilla/5.0 " + "x" * 600 + " bingbot/2.0"
    assert is_bot(giant) is True
    assert _is_bot_user_agent.cache_info().currsize == 2
    assert is_bot(None) is False


def test_raw_header_bytes_share_the_one_bounded_bot_cache() -> None:
    from goaltrack.bots import _is_bot_user_agent, is_bot

    _is_bot_user_agent.cache_clear()
    assert is_bot(b"Mozilla/5.0 (compatible; Googlebot/2.1)") is True
    assert is_bot(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0") is False
    assert _is_bot_user_agent.cache_info().currsize == 2
    assert is_bot(b"Mozilla/5.0 " + b"x" * 600 + b" bingbot/2.0") is True
    assert _is_bot_user_agent.cache_info().currsize == 2
    assert _is_bot_user_agent.cache_info().maxsize == 2048
