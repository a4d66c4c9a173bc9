"""Plain Lambda handlers (an SQS consumer, a schedule): the event says how many goals to track.

``{"goals": N, "invocation": "K", "visitor": "<id>"}``; ``handler`` is decorated with
``goaltrack.serverless.lambda_handler``, ``undecorated`` is the same without it.
"""

from __future__ import annotations

from typing import Any

import goaltrack
import goaltrack.serverless
from tests.support.apps.serverless import GOAL, goal_metadata


def undecorated(event: dict[str, Any], context: object) -> dict[str, int]:
    for n in range(event["goals"]):
        goaltrack.track(GOAL, goal_metadata(event["invocation"], n), visitor_id=event["visitor"])
    return {"tracked": event["goals"]}


handler = goaltrack.serverless.lambda_handler(undecorated)
