"""A clock a test moves by hand (:class:`goaltrack.retry.Clock`): a day costs nothing."""

from __future__ import annotations

import threading


class FakeClock:
    """Monotonic and wall time that move only when told; ``sleep`` moves them at once."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 10_000.0) -> None:
        self._lock = threading.Lock()
        self._wall = wall
        self._monotonic = monotonic
        self.slept = 0.0
        """Seconds ``sleep`` was asked for in all."""

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def wall(self) -> float:
        with self._lock:
            return self._wall

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._wall += seconds
            self._monotonic += seconds
