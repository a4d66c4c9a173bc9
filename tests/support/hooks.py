"""Hooks and client factories that settings name by dotted path in the tests (not a test module)."""

from __future__ import annotations

import httpx

from goaltrack import Goal

#: Every request that clients made by :func:`recording_client` sent, as (method, url).
SENT: list[tuple[str, str]] = []


def recording_client() -> httpx.Client:
    """An application's httpx client, with an event hook that records each request."""

    def record(request: httpx.Request) -> None:
        SENT.append((request.method, str(request.url)))

    return httpx.Client(event_hooks={"request": [record]}, timeout=5.0)


def without_email(goal: Goal) -> Goal:
    """The README's before_send: never send a visitor's email address."""
    metadata = {key: value for key, value in (goal.metadata or {}).items() if key != "email"}
    return goal.replace(metadata=metadata)
