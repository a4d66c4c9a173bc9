"""Transports: how validated goals leave the process (see ``base.Transport``)."""

from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.base import Settlement, Stats, Transport
from goaltrack.transports.inline import DisabledTransport, SyncTransport

__all__ = [
    "BackgroundTransport",
    "DisabledTransport",
    "Settlement",
    "Stats",
    "SyncTransport",
    "Transport",
]
