"""The ``goaltrack`` command: ``check`` a configuration, ``send`` one goal or payment, look
after the ``outbox``, run the ``fake-api``.

A thin front end over :mod:`goaltrack.commands` (the same bodies and flags as ``manage.py`` and
``flask goaltrack``). Configuration comes from the ``GOALTRACK_*`` environment variables,
overridden by options. The API key is best left in ``GOALTRACK_API_KEY`` (a command-line argument
is visible to other users of the machine); it is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from goaltrack import __version__, commands
from goaltrack.commands import CHECK_FLAGS, OUTBOX_FLAGS, SEND_FLAGS, CommandFailed
from goaltrack.options import DEFAULT_PROVIDER, names
from goaltrack.providers import PROVIDERS
from goaltrack.startup import OPTION_PROBLEM, Configuration, read_configuration
from goaltrack.testing import cli as fake_api_cli

__all__ = ["main"]

SOURCE = commands.Source(
    description="GOALTRACK_* variables, then options",
    name="configuration",
    api_key="GOALTRACK_API_KEY (or pass --api-key)",
    outbox="GOALTRACK_OUTBOX",
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status = args.command(args)  # None, or the fake API's exit status
    except CommandFailed as failure:
        print(f"error: {failure.message}", file=sys.stderr)
        return failure.status
    return int(status or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goaltrack", description="Server-side goals for DataFast, Faurya and Flowsery."
    )
    parser.add_argument("--version", action="version", version=f"goaltrack {__version__}")
    subcommands = parser.add_subparsers(required=True, metavar="COMMAND")

    send = subcommands.add_parser(
        "send", help="send one goal (or payment) now and say what the API answered"
    )
    commands.add_arguments(send, SEND_FLAGS)
    _add_account_arguments(send)
    send.set_defaults(command=_send)

    check = subcommands.add_parser("check", help="check the configuration and reach the API")
    commands.add_arguments(check, CHECK_FLAGS)
    _add_account_arguments(check)
    check.set_defaults(command=_check)

    outbox = subcommands.add_parser(
        "outbox", help="the SQLite outbox: status, dead-letters, retry, purge"
    )
    commands.add_arguments(outbox, OUTBOX_FLAGS)
    outbox.set_defaults(command=_outbox)

    fake = subcommands.add_parser("fake-api", help="run the bundled fake API on 127.0.0.1")
    fake_api_cli.add_arguments(fake)
    fake.set_defaults(command=fake_api_cli.run)
    return parser


def _add_account_arguments(parser: argparse.ArgumentParser) -> None:
    # Only this front end takes the account as options: the others read their app's config.
    parser.add_argument(
        "--provider", choices=sorted(PROVIDERS), help=f"default: {DEFAULT_PROVIDER}"
    )
    parser.add_argument("--api-url", help="base URL (default: the provider's)")
    parser.add_argument("--website-id", help="needed with account/workspace tokens")
    parser.add_argument("--api-key", help="prefer the GOALTRACK_API_KEY environment variable")


def _configuration(args: argparse.Namespace) -> Configuration:
    """The ``GOALTRACK_*`` variables, the account options over them; never raises for a value."""
    given = {name: getattr(args, name) or None for name in names("account")}
    configuration = read_configuration(given)
    configuration.settings.tracker_kwargs.pop("mode", None)
    return configuration


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    configuration = _configuration(args)
    bad = [p for p in configuration.errors if p.id == OPTION_PROBLEM]
    if bad:
        raise CommandFailed(f"invalid {SOURCE.name}: " + "; ".join(map(str, bad)), 2)
    return configuration.tracker_settings()


def _echo(line: str, tone: str) -> None:
    print(line)


def _send(args: argparse.Namespace) -> None:
    flags = {flag.dest: getattr(args, flag.dest) for flag in SEND_FLAGS}
    commands.send(_settings(args), **flags, echo=_echo, source=SOURCE)


def _check(args: argparse.Namespace) -> None:
    configuration = _configuration(args)
    commands.check(
        configuration.tracker_settings(),
        problems=configuration.problems,
        offline=args.offline,
        timeout=args.timeout,
        echo=_echo,
        source=SOURCE,
    )


def _outbox(args: argparse.Namespace) -> None:
    commands.outbox(
        args.action,
        args.path or os.environ.get("GOALTRACK_OUTBOX"),
        ids=args.ids,
        limit=args.limit,
        waiting=args.waiting,
        yes=args.yes,
        confirm=lambda question: input(f"{question} [y/N] ").strip().lower() == "y",
        echo=_echo,
        source=SOURCE,
    )


if __name__ == "__main__":
    sys.exit(main())
