"""``manage.py goaltrack_send NAME --visitor-id ID``: send one goal now, to try a key.

Delivers inline (the ``sync`` mode) with the GOALTRACK setting's account, prints what the API
answered, and exits non-zero when the goal was not stored.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from goaltrack.delivery import DeliveryResult, InvalidConfiguration
from goaltrack.django.conf import goaltrack_settings
from goaltrack.goals import Goal, InvalidGoal
from goaltrack.tracker import GoalTracker


class Command(BaseCommand):
    help = "Send one goal for a visitor id now and print the API's answer."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="the goal name, e.g. signup")
        parser.add_argument(
            "--visitor-id", help="the visitor id (the provider's visitor cookie's value)"
        )
        parser.add_argument("--session-id", help="the session id, for providers that take one")
        parser.add_argument(
            "--metadata",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a metadata entry; repeat for more",
        )
        parser.add_argument("--description", help="a description (DataFast)")
        parser.add_argument("--timezone", help="an IANA time zone (Flowsery)")
        parser.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to try for, retries included"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        metadata: dict[str, str] = {}
        for entry in options["metadata"]:
            key, sep, value = entry.partition("=")
            if not sep:
                raise CommandError(f"--metadata takes KEY=VALUE, not {entry!r}")
            metadata[key] = value
        outcome: list[tuple[bool, DeliveryResult]] = []
        settings = {**goaltrack_settings.tracker_kwargs(), **goaltrack_settings.effective_account()}
        settings = {k: v for k, v in settings.items() if v is not None}
        if not settings.get("api_key"):
            raise CommandError("no API key: set GOALTRACK['API_KEY'] (or GOALTRACK_API_KEY)")
        settings.update(
            mode="sync",
            sync_deadline=options["timeout"],
            flush_at_exit=False,
            on_delivery=lambda goal, result: outcome.append((True, result)),
            on_failure=lambda goal, result: outcome.append((False, result)),
        )
        try:
            tracker = GoalTracker(**settings)
        except (InvalidConfiguration, TypeError, ValueError) as exc:
            raise CommandError(f"invalid GOALTRACK setting: {exc}") from exc
        with tracker:
            try:
                goal = Goal.create(
                    tracker.provider,
                    options["name"],
                    visitor_id=options["visitor_id"],
                    session_id=options["session_id"],
                    metadata=metadata or None,
                    description=options["description"],
                    timezone=options["timezone"],
                )
            except InvalidGoal as exc:
                raise CommandError(f"invalid goal: {exc}") from exc
            tracker.submit(goal)
        if not outcome:
            raise CommandError("the goal was not sent")
        delivered, result = outcome[0]
        status = f"HTTP {result.status}" if result.status is not None else "no answer"
        if not delivered:
            raise CommandError(
                f"not delivered to {tracker.provider.name}: {status}: {result.reason}"
            )
        event = f", event id {result.event_id}" if result.event_id else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"delivered goal {goal.name!r} to {tracker.provider.name} ({status}{event})"
            )
        )
