"""``manage.py goaltrack_outbox status|dead-letters|retry|purge``: look after the SQLite outbox.

The outbox is ``GOALTRACK["OUTBOX"]`` (or ``GOALTRACK_OUTBOX``), or ``--path``. Needs no API key.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from goaltrack import outbox_commands
from goaltrack.django.conf import goaltrack_settings


class Command(BaseCommand):
    help = "Show the goaltrack outbox's depth and dead letters; retry or purge dead letters."

    def add_arguments(self, parser: ArgumentParser) -> None:
        outbox_commands.add_arguments(parser, default_path="GOALTRACK['OUTBOX']")

    def handle(self, *args: Any, **options: Any) -> None:
        path = (
            options["path"]
            or goaltrack_settings.tracker_kwargs().get("outbox")
            or os.environ.get("GOALTRACK_OUTBOX")
        )
        if not path:
            raise CommandError(outbox_commands.NO_PATH)
        action = options["action"]
        if action != "status" and not os.path.exists(path):
            raise CommandError(f"no outbox at {path}")
        echo = self.stdout.write
        if action == "status":
            outbox_commands.status(path, echo)
        elif action == "dead-letters":
            outbox_commands.dead_letters(path, echo, options["limit"])
        elif action == "retry":
            outbox_commands.retry(path, echo, options["ids"])
        else:
            outbox_commands.purge(path, echo, waiting=options["waiting"])
