"""Testing support, shipped for users too: the fake API server and offline goal capture.

The fake API needs the ``fakeapi`` extra (Starlette, uvicorn); it is imported on first use so
that ``capture_goals`` works without it. ``python -m goaltrack.testing`` runs it in the
foreground (:mod:`goaltrack.testing.cli`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from goaltrack.testing.capture import CapturedGoals, capture_goals

if TYPE_CHECKING:
    from goaltrack.testing.fake_api import FakeAPIState, create_app
    from goaltrack.testing.server import FakeAPIServer

__all__ = ["CapturedGoals", "FakeAPIServer", "FakeAPIState", "capture_goals", "create_app"]

_LAZY = {
    "FakeAPIServer": "goaltrack.testing.server",
    "FakeAPIState": "goaltrack.testing.fake_api",
    "create_app": "goaltrack.testing.fake_api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            raise ImportError(
                f"goaltrack.testing.{name} needs the fake API's packages: "
                "pip install 'goaltrack[fakeapi]'"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module 'goaltrack.testing' has no attribute {name!r}")
