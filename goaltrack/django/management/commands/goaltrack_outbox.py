"""``manage.py goaltrack_outbox status|dead-letters|retry|purge``: look after the SQLite outbox.

The outbox is ``GOALTRACK["OUTBOX"]`` (or ``GOALTRACK_OUTBOX``), or ``--path``. Needs no API key.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from goaltrack import commands
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.management import SOURCE, echo_for, run


class Command(BaseCommand):
    help = "Show the goaltrack outbox's depth and dead letters; retry or purge dead letters."
    # It needs no API key: a key that cannot work (a system check error) must not keep you from
    # looking after the goals already stored.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands.add_arguments(parser, commands.OUTBOX_FLAGS)

    def handle(self, *args: Any, **options: Any) -> None:
        path = (
            options["path"]
            or goaltrack_settings.tracker_kwargs().get("outbox")
            or os.environ.get("GOALTRACK_OUTBOX")
        )
        run(
            lambda: commands.outbox(
                options["action"],
                path,
                ids=options["ids"],
                limit=options["limit"],
                waiting=options["waiting"],
                yes=options["yes"],
                confirm=lambda question: input(f"{question} [y/N] ").strip().lower() == "y",
                echo=echo_for(self),
                source=SOURCE,
            )
        )
