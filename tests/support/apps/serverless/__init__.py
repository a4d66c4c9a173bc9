"""The same small app for each way goaltrack runs on a serverless platform, for
``tests/system/test_serverless.py`` and ``bench/serverless.py``.

Each answers ``GET /track?goals=N&invocation=K`` by tracking N ``purchase`` goals (metadata
``invocation`` K and ``n``) for the visitor in the request's ``datafast_visitor_id`` cookie, and
``GET /`` without tracking. The account comes from the ``GOALTRACK_*`` variables. Lambda
handlers (``handler``, ...) wrap the apps in the adapters people deploy them with: Mangum
(ASGI), apig-wsgi (WSGI); ``plain`` holds handlers that take the event themselves.
"""

from __future__ import annotations

GOAL = "purchase"


def goal_metadata(invocation: str, n: int) -> dict[str, str]:
    return {"invocation": invocation, "n": str(n)}
