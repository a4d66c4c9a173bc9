"""The bytes fast path and the remembered headers agree with the plain parser on any header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goaltrack.cookies import _parsed, header_reader, visitor_from_cookies
from goaltrack.providers import PROVIDERS
from tests.core.test_fuzz_inputs import FUZZ, HEADER_EXAMPLES, cookie_headers

CASES = [
    b"datafast_visitor_id=0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21",
    b'x=1;  \t datafast_visitor_id= "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21" ;y=2',
    b"my_datafast_visitor_id=0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21",
    b"_fs_sid=abc; _fs_vid=; _fs_vid=second",
    b"_fs_sid=abc",
    b'_fs_vid=""; _fs_sid="',
    b"faurya_visitor_id=" + b"v" * 128 + b"; faurya_session_id=" + b"s" * 129,
]


def test_known_headers_read_as_the_text_parser_reads_them() -> None:
    for header in CASES:
        for provider in PROVIDERS.values():
            text = header.decode("latin-1")
            expected = _parsed(text, provider)
            reader = header_reader(provider)
            assert reader.visitor_text(text) == expected
            assert reader.visitor_text(text) == expected  # remembered
            assert visitor_from_cookies(text, provider) == expected
            assert reader.read(header) == expected
            assert reader.visitor(header) == expected
            assert reader.visitor(header) == expected  # remembered
            assert visitor_from_cookies(header, provider) == expected


@pytest.mark.slow
@settings(FUZZ, max_examples=HEADER_EXAMPLES * 2)
@given(header=cookie_headers(), provider=st.sampled_from(sorted(PROVIDERS)))
def test_the_bytes_path_matches_the_text_path(header: bytes, provider: str) -> None:
    spec = PROVIDERS[provider]
    text = header.decode("latin-1")
    expected = _parsed(text, spec)
    reader = header_reader(spec)
    assert reader.visitor_text(text) == expected
    assert reader.visitor_text(text) == expected
    assert reader.read(header) == expected
    assert reader.visitor(header) == expected
    assert reader.visitor(header) == expected


def test_remembered_headers_are_bounded() -> None:
    from goaltrack.cookies import REMEMBERED_HEADER_BYTES, REMEMBERED_HEADERS, HeaderReader

    reader = HeaderReader(PROVIDERS["flowsery"])
    for number in range(REMEMBERED_HEADERS * 3):
        assert reader.visitor(b"_fs_vid=v%d" % number) == (f"v{number}", None)
    assert 0 < len(reader._seen) <= REMEMBERED_HEADERS
    big = b"_fs_vid=big; pad=" + b"x" * REMEMBERED_HEADER_BYTES
    assert reader.visitor(big) == ("big", None)
    assert big not in reader._seen
