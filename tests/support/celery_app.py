"""The Celery app the Celery transport tests run a real worker with (not a test module).

The broker URL comes from ``GOALTRACK_TEST_BROKER``; the worker's goaltrack account from the
``GOALTRACK_*`` variables, as a real worker would: the task messages carry no key.
"""

from __future__ import annotations

import os

from celery import Celery

import goaltrack


def make_app(broker_url: str) -> Celery:
    """An app on *broker_url*: the worker's, or a test's own (one per broker: an app keeps its
    connections, so one app moved to another test's broker went on publishing to the old one)."""
    made = Celery("goaltrack_tests", broker=broker_url, include=["goaltrack.transports.celery"])
    made.conf.update(
        broker_connection_retry_on_startup=True,
        task_default_queue="goaltrack-tests",
        worker_hijack_root_logger=False,
    )
    return made


app = make_app(os.environ.get("GOALTRACK_TEST_BROKER", "redis://127.0.0.1:6379/0"))

if os.environ.get("GOALTRACK_API_KEY"):  # in the worker: quick retries for the tests
    goaltrack.configure(backoff_base=0.05, backoff_max=0.2, flush_at_exit=False)
