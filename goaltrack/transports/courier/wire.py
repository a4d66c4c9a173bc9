"""The courier's messages: one JSON array per line, in each direction of the pipes.

From the web process (the courier's stdin):

- the first line, :func:`hello`: what the courier delivers with (the provider, the key, the URL,
  the retry rules, the bounds). The key travels only here, never in the command line, the
  environment or a file;
- ``["g", seq, item]``: a goal or payment to deliver (:func:`item_line`; *item* as
  :func:`goaltrack.items.encode` writes it), *seq* numbered by the web process;
- end of file: close (deliver within ``shutdown_timeout``, then exit).

From the courier (its stdout):

- ``["s", [event, ...]]``: settlements, batched; an event is ``["d", seq, result, maybe_dup]``
  (delivered), ``["x", seq, result]`` (failed), ``["o", seq, reason]`` (dropped) or
  ``["y", seq, result, delay]`` (to be retried);
- ``["l", level, logger_name, text]``: a log line of the courier's, for the web process's
  logging to emit.

A flush needs no message: the courier delivers everything as soon as it can, and the web
process waits for the settlements.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from goaltrack import items
from goaltrack.delivery import DeliveryResult, Outcome
from goaltrack.retry import RetryPolicy

__all__ = [
    "CourierConfig",
    "decode",
    "encode",
    "hello",
    "item_line",
    "result_from_list",
    "result_to_list",
]


@dataclasses.dataclass(frozen=True)
class CourierConfig:
    """What the courier needs to deliver as the web process's tracker would."""

    provider: str
    api_key: str = dataclasses.field(repr=False)
    api_url: str
    website_id: str | None
    retry: RetryPolicy
    max_queue_size: int
    max_in_flight: int
    timeout: float
    proxy: str | None
    shutdown_timeout: float
    log_level: int

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["retry"] = dataclasses.asdict(self.retry)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CourierConfig:
        return cls(**{**data, "retry": RetryPolicy(**data["retry"])})


def encode(message: list[Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> list[Any]:
    message = json.loads(line)
    if not isinstance(message, list) or not message:
        raise ValueError(f"not a courier message: {line[:80]!r}")
    return message


def hello(config: CourierConfig) -> bytes:
    return encode(["hello", config.to_json()])


def item_line(seq: int, item: items.Tracked) -> bytes:
    return b'["g",%d,%s]\n' % (seq, items.encode(item).encode())


def result_to_list(result: DeliveryResult) -> list[Any]:
    return [
        result.outcome.value,
        result.reason,
        result.status,
        result.event_id,
        result.retry_after,
        result.may_have_arrived,
        result.duplicate,
    ]


def result_from_list(data: list[Any]) -> DeliveryResult:
    outcome, reason, status, event_id, retry_after, may_have_arrived, duplicate = data
    return DeliveryResult(
        Outcome(outcome), reason, status, event_id, retry_after, may_have_arrived, duplicate
    )
