"""``manage.py goaltrack_check``: is the GOALTRACK setting right, and does the API take the key?

Prints the configuration (never the key), every problem the system checks know of, then asks the
API with a test request that records nothing. Exits non-zero when goals would not be delivered.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from goaltrack.config import configuration_problems
from goaltrack.django.checks import check_settings
from goaltrack.django.conf import goaltrack_settings
from goaltrack.tracker import GoalTracker


class Command(BaseCommand):
    help = "Check the GOALTRACK setting and that the provider's API is reachable with the key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--offline", action="store_true", help="check the settings only, not the API"
        )
        parser.add_argument(
            "--timeout", type=float, default=5.0, help="seconds to wait for the API (default 5)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = goaltrack_settings.effective_account()
        kwargs = goaltrack_settings.tracker_kwargs()
        self.stdout.write("goaltrack settings (settings.GOALTRACK, then GOALTRACK_* variables)")
        rows = [
            ("provider", account["provider"] or "datafast (default)"),
            ("API URL", account["api_url"] or "the provider's default"),
            ("API key", "set" if account["api_key"] else "not set"),
            ("website id", account["website_id"] or "not set"),
            ("mode", kwargs.get("mode", "background")),
        ]
        for label, value in rows:
            self.stdout.write(f"  {label + ':':<12} {value}")

        failed = False
        messages = check_settings()
        self.stdout.write("checks:")
        if not messages:
            self.stdout.write(self.style.SUCCESS("  OK: no problems found"))
        for message in messages:
            style = self.style.ERROR if message.is_serious() else self.style.WARNING
            hint = f" HINT: {message.hint}" if message.hint else ""
            self.stdout.write(style(f"  {message.id}: {message.msg}{hint}"))
            failed = failed or message.is_serious()
        if not account["api_key"]:
            failed = True

        self.stdout.write("API:")
        has_errors = any(p.level == "error" for p in configuration_problems(**account))
        if options["offline"]:
            self.stdout.write("  not contacted (--offline)")
        elif not account["api_key"] or has_errors:
            self.stdout.write("  not contacted: fix the settings first")
        else:
            tracker = GoalTracker(
                account["api_key"],
                provider=account["provider"] or "datafast",
                api_url=account["api_url"],
                website_id=account["website_id"],
                mode="disabled",
                flush_at_exit=False,
            )
            ok, detail = tracker.check_connection(options["timeout"])
            style = self.style.SUCCESS if ok else self.style.ERROR
            self.stdout.write(style(f"  {'OK' if ok else 'FAILED'}: {detail}"))
            failed = failed or not ok
        if failed:
            raise CommandError("goaltrack is not ready to deliver goals (see above)")
        self.stdout.write(self.style.SUCCESS("goaltrack is ready to deliver goals"))
