"""``manage.py goaltrack_check``: is the GOALTRACK setting right, and does the API take the key?

Prints the configuration (never the key), every problem the system checks know of, then asks the
API with a test request that records nothing. Exits non-zero when goals would not be delivered.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from goaltrack import commands
from goaltrack.config import Problem
from goaltrack.django.checks import check_settings
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.management import SOURCE, echo_for, run, tracker_settings


class Command(BaseCommand):
    help = "Check the GOALTRACK setting and that the provider's API is reachable with the key."
    # It runs goaltrack's system checks itself and reports them; Django's would stop it before.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        commands.add_arguments(parser, commands.CHECK_FLAGS)

    def handle(self, *args: Any, **options: Any) -> None:
        problems = [
            Problem(
                str(message.id),
                "error" if message.is_serious() else "warning",
                message.msg,
                message.hint or "",
            )
            for message in check_settings()
        ]
        try:
            settings = tracker_settings()
        except CommandError:  # a bad option: reported among the problems (goaltrack.E101)
            settings = goaltrack_settings.effective_account()
        run(
            lambda: commands.check(
                settings,
                problems=problems,
                offline=options["offline"],
                timeout=options["timeout"],
                echo=echo_for(self),
                source=SOURCE,
            )
        )
