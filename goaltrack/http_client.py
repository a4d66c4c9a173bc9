"""HTTP for goal delivery: the one module that knows the HTTP client library.

Built on httpcore, httpx's own connection layer: pooled keep-alive connections, safe to share
between delivery threads, and a fraction of the CPU per request of the full httpx client (see
``bench/delivery.py``). Redirects are never followed, so the API key is never re-sent to another
location.
"""

from __future__ import annotations

import urllib.request
from typing import NamedTuple
from urllib.parse import urlsplit

import httpcore

__all__ = ["HttpClient", "HttpError", "HttpResponse"]


class HttpResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes


class HttpError(Exception):
    """The request got no complete response.

    ``may_have_arrived`` is True when the request may have reached the API before the failure
    (a read timeout, a connection dropped mid-response): retrying it may then duplicate the goal.
    """

    def __init__(self, message: str, *, may_have_arrived: bool) -> None:
        super().__init__(message)
        self.may_have_arrived = may_have_arrived


class HttpClient:
    """A pool of keep-alive connections to one API origin."""

    def __init__(
        self,
        *,
        max_connections: int = 4,
        timeout: float = 5.0,
        proxy: str | None = None,
        target_url: str | None = None,
    ) -> None:
        self._timeouts = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        proxy = proxy if proxy is not None else _proxy_from_environment(target_url)
        self._pool = httpcore.ConnectionPool(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
            proxy=httpcore.Proxy(proxy) if proxy else None,
        )

    def post(self, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> HttpResponse:
        """POST *body* to *url*; raise :class:`HttpError` when no complete response came back."""
        try:
            response = self._pool.request(
                b"POST",
                url,
                headers=headers,
                content=body,
                extensions={"timeout": self._timeouts},
            )
        except (httpcore.ConnectTimeout, httpcore.PoolTimeout) as exc:
            raise HttpError(
                f"connect timeout ({type(exc).__name__})", may_have_arrived=False
            ) from None
        except httpcore.ConnectError as exc:
            raise HttpError(f"connection failed: {exc}", may_have_arrived=False) from None
        except httpcore.TimeoutException as exc:
            raise HttpError(f"timed out ({type(exc).__name__})", may_have_arrived=True) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise HttpError(
                f"connection broken ({type(exc).__name__}: {exc})", may_have_arrived=True
            ) from None
        except httpcore.UnsupportedProtocol as exc:
            raise HttpError(f"unsupported URL: {exc}", may_have_arrived=False) from None
        headers_out = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
        }
        return HttpResponse(response.status, headers_out, response.content)

    def close(self) -> None:
        self._pool.close()


def _proxy_from_environment(target_url: str | None) -> str | None:
    """The proxy the standard environment variables ask for, as httpx's ``trust_env`` would."""
    if not target_url:
        return None
    parts = urlsplit(target_url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)
