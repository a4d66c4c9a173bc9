"""Delivery from a separate process, the courier: the web process only writes each goal to a pipe.

- :class:`CourierTransport` (:mod:`.transport`): the web process's end.
- :mod:`.child`: the courier, ``python -m goaltrack.transports.courier``.
- :mod:`.wire`: the messages between them.
- :func:`courier_unavailable`: where a courier cannot run, and why; there ``mode="background"``
  delivers from the web process's own threads, as ``delivery_process=False`` asks everywhere.
"""

from __future__ import annotations

import os
import re
import sys

from goaltrack.process import in_uwsgi_master, threads_are_greenlets
from goaltrack.providers import Provider, get_provider
from goaltrack.transports.courier.transport import CourierTransport

__all__ = ["CourierTransport", "courier_unavailable"]

_PYTHON = re.compile(r"^(python|pypy)(\d+(\.\d+)?)?(\.exe)?$")


def courier_unavailable(*, provider: Provider, http_client: object) -> str | None:
    """Why a courier cannot deliver for this tracker in this process, or None when it can."""
    if http_client is not None:
        return "http_client= is an object of this process"
    try:
        if get_provider(provider.name) is not provider:
            return "the provider is not one of goaltrack's"
    except Exception:
        return "the provider is not one of goaltrack's"
    if os.name != "posix":
        return "not a POSIX system"
    if "uwsgi" in sys.modules or in_uwsgi_master():
        return "uWSGI runs the app"
    if threads_are_greenlets():
        return "gevent has patched threading"
    if not sys.executable or not _PYTHON.match(os.path.basename(sys.executable)):
        return f"the interpreter that runs the app is not a python executable ({sys.executable!r})"
    return None
