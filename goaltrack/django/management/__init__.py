"""Management commands ``goaltrack_check``, ``goaltrack_send`` and ``goaltrack_outbox``: Django's
front ends for the command bodies of :mod:`goaltrack.commands`. This module holds what the three
share: the ``GOALTRACK`` setting as the bodies take it, Django's output, its CommandError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from goaltrack.commands import CommandFailed, Source
from goaltrack.django.conf import goaltrack_settings

SOURCE = Source(
    description="settings.GOALTRACK, then GOALTRACK_* variables",
    name="GOALTRACK setting",
    api_key="GOALTRACK['API_KEY'] (or GOALTRACK_API_KEY)",
    outbox="GOALTRACK['OUTBOX'] (or GOALTRACK_OUTBOX)",
)


def tracker_settings() -> dict[str, Any]:
    """The tracker arguments in effect: the setting (converted), then the environment."""
    try:
        given = goaltrack_settings.read().tracker_kwargs
    except (ValueError, TypeError) as exc:
        raise CommandError(f"invalid {SOURCE.name}: {exc}", returncode=2) from None
    return {**given, **goaltrack_settings.effective_account()}


def echo_for(command: BaseCommand) -> Callable[[str, str], None]:
    """``echo`` for a command body: its stdout, in Django's colours."""
    styles = {
        "ok": command.style.SUCCESS,
        "warning": command.style.WARNING,
        "error": command.style.ERROR,
    }

    def echo(line: str, tone: str) -> None:
        style = styles.get(tone)
        command.stdout.write(style(line) if style else line)

    return echo


def run(body: Callable[[], None]) -> None:
    """Run a command body; its failure is Django's CommandError, printed once."""
    try:
        body()
    except CommandFailed as failure:
        raise CommandError(failure.message, returncode=failure.status) from None
