"""Visitor ids from cookie mappings and raw Cookie headers; malformed values never forwarded."""

from __future__ import annotations

import pytest

from goaltrack import Visitor, visitor_from_cookies
from goaltrack.cookies import MAX_COOKIE_HEADER_BYTES, parse_cookie_header

VISITOR = "a3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
SESSION = "s" + VISITOR


def test_datafast_from_a_mapping() -> None:
    cookies = {"datafast_visitor_id": VISITOR, "datafast_session_id": SESSION, "other": "x"}
    assert visitor_from_cookies(cookies, "datafast") == Visitor(VISITOR, SESSION)


def test_faurya_and_flowsery_cookie_names() -> None:
    assert visitor_from_cookies({"faurya_visitor_id": "fv1"}, "faurya") == Visitor("fv1", None)
    header = "_fs_vid=vid_123; _fs_sid=sid-456"
    assert visitor_from_cookies(header, "flowsery") == Visitor("vid_123", "sid-456")


def test_raw_header_str_and_bytes() -> None:
    header = f"theme=dark; datafast_visitor_id={VISITOR}; datafast_session_id={SESSION}"
    assert visitor_from_cookies(header, "datafast") == Visitor(VISITOR, SESSION)
    assert visitor_from_cookies(header.encode(), "datafast") == Visitor(VISITOR, SESSION)


def test_quoted_values_and_spacing() -> None:
    # RFC 6265: no blanks around "=", but blanks around pairs and quoted values happen.
    header = f'x=1;  datafast_visitor_id= "{VISITOR}" ;y=2'
    assert visitor_from_cookies(header, "datafast") == Visitor(VISITOR, None)


def test_a_name_inside_another_cookie_does_not_count() -> None:
    header = f"my_datafast_visitor_id={VISITOR}; note=datafast_visitor_id={VISITOR}"
    assert visitor_from_cookies(header, "datafast") is None


def test_first_duplicate_wins() -> None:
    other = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
    header = f"datafast_visitor_id={VISITOR}; datafast_visitor_id={other}"
    assert visitor_from_cookies(header, "datafast") == Visitor(VISITOR, None)


@pytest.mark.parametrize(
    "cookies",
    [
        None,
        "",
        {},
        {"datafast_visitor_id": ""},
        {"datafast_visitor_id": "not-a-uuid"},
        {"datafast_visitor_id": VISITOR + "\r\nSet-Cookie: x=1"},
        {"datafast_visitor_id": VISITOR.upper() + "x"},
        {"datafast_session_id": SESSION},  # a session alone: nothing to attribute for DataFast
        "datafast_visitor_id",
        ";;;=;=",
        b"\xff\xfe datafast_visitor_id=\xff",
    ],
)
def test_no_visitor(cookies: object) -> None:
    assert visitor_from_cookies(cookies, "datafast") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["a b", "x" * 129, "v\x00", "v\nw", "<script>", "é"])
def test_malformed_opaque_ids_are_ignored(value: str) -> None:
    assert visitor_from_cookies({"_fs_vid": value}, "flowsery") is None
    assert visitor_from_cookies({"_fs_vid": "ok", "_fs_sid": value}, "flowsery") == Visitor(
        "ok", None
    )


def test_flowsery_session_without_visitor_still_counts() -> None:
    assert visitor_from_cookies({"_fs_sid": "s1"}, "flowsery") == Visitor(None, "s1")


def test_oversized_header_is_not_scanned() -> None:
    header = "a=" + "x" * MAX_COOKIE_HEADER_BYTES + f"; datafast_visitor_id={VISITOR}"
    assert visitor_from_cookies(header, "datafast") is None


def test_parse_cookie_header_returns_only_the_names_asked_for() -> None:
    assert parse_cookie_header("a=1; b=2; c=3", ("a", "c")) == {"a": "1", "c": "3"}


def test_unknown_provider() -> None:
    with pytest.raises(ValueError, match="unknown provider 'plausible'"):
        visitor_from_cookies({}, "plausible")
