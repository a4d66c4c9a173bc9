"""``flask goaltrack check|send|outbox``: Flask's front end for :mod:`goaltrack.commands`.

The same bodies and flags as ``goaltrack ...`` and ``manage.py goaltrack_...``, configured by the
app's ``GOALTRACK_*`` config; click options are built from the flag definitions there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup

from goaltrack import commands
from goaltrack.commands import CHECK_FLAGS, OUTBOX_FLAGS, SEND_FLAGS, CommandFailed, Flag
from goaltrack.config import configuration_problems
from goaltrack.flask.config import settings_of

__all__ = ["goaltrack_cli"]

F = TypeVar("F", bound=Callable[..., Any])

SOURCE = commands.Source(
    description="the app's GOALTRACK_* config",
    name="Flask config",
    api_key="the GOALTRACK_API_KEY config",
    outbox="the GOALTRACK_OUTBOX config",
)
_COLOURS = {"ok": "green", "warning": "yellow", "error": "red"}

goaltrack_cli = AppGroup("goaltrack", help="Check goaltrack's configuration and send test goals.")


def _flags(flags: Sequence[Flag]) -> Callable[[F], F]:
    """The click arguments and options of *flags*."""

    def decorate(command: F) -> F:
        for flag in reversed(flags):
            if not flag.names:
                choice = click.Choice(flag.choices) if flag.choices else None
                command = click.argument(flag.dest, type=choice)(command)
            elif flag.kind == "switch":
                command = click.option(*flag.names, flag.dest, is_flag=True, help=flag.help)(
                    command
                )
            elif flag.kind == "repeat":
                command = click.option(
                    *flag.names,
                    flag.dest,
                    multiple=True,
                    type=flag.type,
                    metavar=flag.metavar,
                    help=flag.help,
                )(command)
            else:
                command = click.option(
                    *flag.names, flag.dest, type=flag.type, default=flag.default, help=flag.help
                )(command)
        return command

    return decorate


def _echo(line: str, tone: str) -> None:
    click.secho(line, fg=_COLOURS.get(tone))


def _run(body: Callable[[], None]) -> None:
    try:
        body()
    except CommandFailed as failure:
        click.secho(f"Error: {failure.message}", err=True, fg="red")
        raise click.exceptions.Exit(failure.status) from None


def _tracker_settings() -> dict[str, Any]:
    return settings_of(current_app).tracker_kwargs


@goaltrack_cli.command("check")
@_flags(CHECK_FLAGS)
def check_command(offline: bool, timeout: float) -> None:
    """Check the GOALTRACK_* configuration and that the API takes the key."""
    settings = _tracker_settings()
    account = {
        name: settings.get(name) for name in ("api_key", "provider", "api_url", "website_id")
    }
    _run(
        lambda: commands.check(
            settings,
            problems=configuration_problems(**account),
            offline=offline,
            timeout=timeout,
            echo=_echo,
            source=SOURCE,
        )
    )


@goaltrack_cli.command("send")
@_flags(SEND_FLAGS)
def send_command(
    name: str,
    visitor_id: str | None,
    session_id: str | None,
    metadata: tuple[str, ...],
    description: str | None,
    timezone: str | None,
    timeout: float,
) -> None:
    """Send one goal NAME with this app's configuration and report what the API said."""
    _run(
        lambda: commands.send(
            _tracker_settings(),
            name=name,
            visitor_id=visitor_id,
            session_id=session_id,
            metadata=metadata,
            description=description,
            timezone=timezone,
            timeout=timeout,
            echo=_echo,
            source=SOURCE,
        )
    )


@goaltrack_cli.command("outbox")
@_flags(OUTBOX_FLAGS)
def outbox_command(
    action: str, path: str | None, ids: tuple[int, ...], limit: int, waiting: bool, yes: bool
) -> None:
    """The SQLite outbox: status, dead-letters, retry, purge."""
    _run(
        lambda: commands.outbox(
            action,
            path or current_app.config.get("GOALTRACK_OUTBOX"),
            ids=ids,
            limit=limit,
            waiting=waiting,
            yes=yes,
            confirm=lambda question: click.confirm(question, default=False),
            echo=_echo,
            source=SOURCE,
        )
    )
