"""goaltrack.integrations: the current visitor, bound directly or through a lazy source."""

from __future__ import annotations

from goaltrack import Visitor
from goaltrack.integrations import VisitorSource, bind_visitor, current_visitor, unbind_visitor

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
