"""Goal delivery through the application's own httpx (or httpx2) client.

Pass ``http_client=`` an ``httpx.Client`` / ``httpx2.Client``, or a callable that returns one
(a factory: each process then makes its own, which pre-forking servers need), and goal delivery
uses that client's proxies, ``verify`` and client certificates, event hooks, mounts and
transports (``httpx.MockTransport`` in tests included).

This module only adapts ``client.stream("POST", ...)`` to the interface the workers call
(:class:`~goaltrack.http_client.HttpPoster`): the same bounded read (at most
``MAX_RESPONSE_BYTES`` of a body), the same :class:`~goaltrack.http_client.HttpError` with
``may_have_arrived``, redirects never followed (whatever the client's ``follow_redirects``), so
the delivery rules in :mod:`goaltrack.delivery` stay the only ones. The client's own timeouts
apply (per connect, read, write and pool wait); goaltrack's total deadline per request belongs
to its default client. goaltrack never closes a client it was given; it closes the ones a
factory made for it.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from goaltrack.http_client import MAX_RESPONSE_BYTES, HttpError, HttpResponse

__all__ = ["HttpxPoster", "is_httpx_client"]

logger = logging.getLogger("goaltrack")

_warned_fork = False


def is_httpx_client(value: object) -> bool:
    """An httpx-style client (rather than a factory of one)."""
    return callable(getattr(value, "stream", None)) and callable(getattr(value, "close", None))


class HttpxPoster:
    """POSTs goals with an httpx-style client; safe to share between threads, as httpx is."""

    def __init__(self, client_or_factory: Any, *, made: Any = None) -> None:
        """*made*: a client the factory already made (the tracker checks the factory early)."""
        if is_httpx_client(client_or_factory):
            self._client = client_or_factory
            self._owned = False
        elif callable(client_or_factory):
            self._client = made if made is not None else client_or_factory()
            self._owned = True
            if not is_httpx_client(self._client):
                raise TypeError(
                    f"http_client factory returned {type(self._client).__name__}, "
                    "not an httpx.Client or httpx2.Client"
                )
        else:
            raise TypeError(
                "http_client must be an httpx.Client / httpx2.Client or a callable returning one, "
                f"not {type(client_or_factory).__name__}"
            )
        self._pid = os.getpid()
        self._errors = importlib.import_module(type(self._client).__module__.split(".")[0])
        self._timeout_type: Callable[..., Any] = self._errors.Timeout

    def post(
        self,
        url: str,
        request_headers: Mapping[str, str],
        body: bytes,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        self._warn_if_shared_across_fork()
        options: dict[str, Any] = {}
        if deadline is not None:  # the exit flush: no request may outlive it
            options["timeout"] = self._timeout_type(max(0.001, deadline - time.monotonic()))
        errors = self._errors
        try:
            with self._client.stream(
                "POST",
                url,
                content=body,
                headers=dict(request_headers),
                follow_redirects=False,
                **options,
            ) as response:
                content = bytearray()
                for chunk in response.iter_bytes():
                    content += chunk[: MAX_RESPONSE_BYTES - len(content)]
                    if len(content) >= MAX_RESPONSE_BYTES:
                        break  # the rest is never read; leaving the block closes the connection
                headers = {name.lower(): value for name, value in response.headers.items()}
                return HttpResponse(response.status_code, headers, bytes(content))
        except (errors.ConnectError, errors.ConnectTimeout, errors.PoolTimeout) as exc:
            raise HttpError(_reason("connection failed", exc), may_have_arrived=False) from None
        except errors.TimeoutException as exc:
            raise HttpError(_reason("no complete response", exc), may_have_arrived=True) from None
        except errors.TransportError as exc:
            raise HttpError(_reason("connection broken", exc), may_have_arrived=True) from None

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def _warn_if_shared_across_fork(self) -> None:
        global _warned_fork
        if self._owned or _warned_fork or os.getpid() == self._pid:
            return
        _warned_fork = True
        logger.warning(
            "goaltrack: the http_client given was created before this process forked, so its "
            "connections are shared with the parent; pass a factory (a callable returning a "
            "client) so that each process makes its own"
        )


def _reason(what: str, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    return f"{what} ({type(exc).__name__}: {detail})"
