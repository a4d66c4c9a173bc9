"""``manage.py goaltrack_send NAME --visitor-id ID``: send one goal now, to try a key (or a
payment: ``--amount 29.90 --currency USD --transaction-id ID`` instead of NAME).

Delivers inline with the GOALTRACK setting's account, prints what the API answered, and exits
non-zero when the goal was not stored.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from goaltrack import commands
from goaltrack.django.management import SOURCE, echo_for, run, tracker_settings


class Command(BaseCommand):
    help = "Send one goal (or payment) for a visitor id now and print the API's answer."

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands.add_arguments(parser, commands.SEND_FLAGS)

    def handle(self, *args: Any, **options: Any) -> None:
        flags = {flag.dest: options[flag.dest] for flag in commands.SEND_FLAGS}
        run(lambda: commands.send(tracker_settings(), **flags, echo=echo_for(self), source=SOURCE))
