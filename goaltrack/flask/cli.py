"""``flask goaltrack check|send|outbox``: Flask's front end for :mod:`goaltrack.commands`.

The same bodies and flags as ``goaltrack ...`` and ``manage.py goaltrack_...``, configured by the
app's ``GOALTRACK_*`` config; click options are built from the flag definitions there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from flask import current_app
from flask.cli import AppGroup, FlaskGroup

from goaltrack import commands
from goaltrack.commands import CHECK_FLAGS, OUTBOX_FLAGS, SEND_FLAGS, CommandFailed, Flag
from goaltrack.flask.config import config_key, configured_values
from goaltrack.startup import OPTION_PROBLEM, Configuration, read_configuration

__all__ = ["goaltrack_cli", "loading_for_goaltrack_command"]

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
                command = click.argument(flag.dest, type=choice, required=flag.kind != "optional")(
                    command
                )
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


def loading_for_goaltrack_command() -> bool:
    """Is the Flask CLI loading the app to run ``flask goaltrack ...``?

    Such a command must run, and report, whatever the configuration says: ``init_app`` then
    does not refuse to start in debug or testing mode.
    """
    context = click.get_current_context(silent=True)
    if context is None or not isinstance(context.find_root().command, FlaskGroup):
        return False
    arguments = sys.argv[1:]
    # The command name, not the value of an option before it (``--app goaltrack``).
    return any(
        argument == goaltrack_cli.name and (i == 0 or not arguments[i - 1].startswith("-"))
        for i, argument in enumerate(arguments)
    )


def _configuration() -> Configuration:
    """The app's GOALTRACK_* config as ``init_app`` read it (the environment merged in)."""
    values = configured_values(current_app)
    return read_configuration(values, label=config_key, environment=False)


def _tracker_settings() -> dict[str, Any]:
    configuration = _configuration()
    bad = [p for p in configuration.errors if p.id == OPTION_PROBLEM]
    if bad:
        raise CommandFailed(f"invalid {SOURCE.name}: " + "; ".join(map(str, bad)), 2)
    return configuration.tracker_settings()


@goaltrack_cli.command("check")
@_flags(CHECK_FLAGS)
def check_command(offline: bool, timeout: float) -> None:
    """Check the GOALTRACK_* configuration and that the API takes the key."""
    configuration = _configuration()
    _run(
        lambda: commands.check(
            configuration.tracker_settings(),
            problems=configuration.problems,
            offline=offline,
            timeout=timeout,
            echo=_echo,
            source=SOURCE,
        )
    )


@goaltrack_cli.command("send")
@_flags(SEND_FLAGS)
def send_command(**flags: Any) -> None:
    """Send one goal NAME (or a payment: --amount, --currency, --transaction-id) with this app's
    configuration and report what the API said."""
    _run(lambda: commands.send(_tracker_settings(), **flags, echo=_echo, source=SOURCE))


def _configured_outbox() -> str | None:
    outbox = configured_values(current_app).get("outbox")
    return None if outbox is None else str(outbox)


@goaltrack_cli.command("outbox")
@_flags(OUTBOX_FLAGS)
def outbox_command(
    action: str, path: str | None, ids: tuple[int, ...], limit: int, waiting: bool, yes: bool
) -> None:
    """The SQLite outbox: status, dead-letters, retry, purge."""
    _run(
        lambda: commands.outbox(
            action,
            path or _configured_outbox(),
            ids=ids,
            limit=limit,
            waiting=waiting,
            yes=yes,
            confirm=lambda question: click.confirm(question, default=False),
            echo=_echo,
            source=SOURCE,
        )
    )
