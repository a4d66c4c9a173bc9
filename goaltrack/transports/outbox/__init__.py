"""The durable transport: goals go through a SQLite outbox file before they go to the API.

- :mod:`~goaltrack.transports.outbox.store`: the file (schema, statements) and its
  administration (:class:`Outbox`, behind ``goaltrack outbox ...``);
- :mod:`~goaltrack.transports.outbox.transport`: :class:`OutboxTransport`, the worker threads
  that deliver from the file;
- :mod:`~goaltrack.transports.outbox.gate`: the gate every SQLite call of the two runs inside,
  which a fork waits on (no thread inside SQLite as the process forks).
"""

from goaltrack.transports.outbox.store import (
    DeadLetter,
    Outbox,
    OutboxStatus,
    decode_goal,
    encode_goal,
)
from goaltrack.transports.outbox.transport import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_GOALS,
    OutboxTransport,
)

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_GOALS",
    "DeadLetter",
    "Outbox",
    "OutboxStatus",
    "OutboxTransport",
    "decode_goal",
    "encode_goal",
]
