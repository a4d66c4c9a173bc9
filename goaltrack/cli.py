"""The ``goaltrack`` command: ``send`` one goal, ``check`` a configuration, look after the
``outbox``, run the ``fake-api``.

Configuration comes from the ``GOALTRACK_*`` environment variables, overridden by options. The
API key is best left in ``GOALTRACK_API_KEY`` (a command-line argument is visible to other users
of the machine); it is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from goaltrack import fakeapi, outbox_commands
from goaltrack.config import configuration_problems, settings_from_env
from goaltrack.delivery import DeliveryResult, InvalidConfiguration
from goaltrack.goals import Goal, InvalidGoal
from goaltrack.providers import PROVIDERS
from goaltrack.tracker import GoalTracker

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Any = args.command
    return int(command(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="goaltrack", description="Server-side goals for DataFast, Faurya and Flowsery."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    send = commands.add_parser("send", help="send one goal now and say what the API answered")
    send.add_argument("name", help="goal name, e.g. signup")
    send.add_argument("--visitor", help="visitor id (the provider's visitor cookie)")
    send.add_argument("--session", help="session id (Faurya, Flowsery)")
    send.add_argument(
        "--metadata", "-m", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    send.add_argument("--description", help="goal description (DataFast)")
    _add_connection_arguments(send)
    send.set_defaults(command=_send)

    check = commands.add_parser("check", help="check the configuration and reach the API")
    _add_connection_arguments(check)
    check.add_argument("--offline", action="store_true", help="skip the reachability check")
    check.set_defaults(command=_check)

    outbox = commands.add_parser(
        "outbox", help="the SQLite outbox: status, dead-letters, retry, purge"
    )
    outbox_commands.add_arguments(outbox, default_path="GOALTRACK_OUTBOX")
    outbox.add_argument("--yes", action="store_true", help="purge: do not ask")
    outbox.set_defaults(command=_outbox)

    fake = commands.add_parser("fake-api", help="run the bundled fake API on 127.0.0.1")
    fakeapi.add_arguments(fake)
    fake.set_defaults(command=fakeapi.run)
    return parser


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", choices=sorted(PROVIDERS), help="default: datafast")
    parser.add_argument("--api-url", help="base URL (default: the provider's)")
    parser.add_argument("--website-id", help="needed with account/workspace tokens")
    parser.add_argument("--api-key", help="prefer the GOALTRACK_API_KEY environment variable")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = settings_from_env()
    settings.pop("mode", None)
    for name in ("provider", "api_url", "website_id", "api_key"):
        value = getattr(args, name)
        if value:
            settings[name] = value
    return settings


def _send(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.get("api_key"):
        print("error: no API key: set GOALTRACK_API_KEY (or pass --api-key)", file=sys.stderr)
        return 2
    outcome: list[tuple[str, Goal, DeliveryResult]] = []
    try:
        metadata = dict(_key_value(item) for item in args.metadata)
        tracker = GoalTracker(
            **settings,
            mode="sync",
            timeout=args.timeout,
            max_retries=2,
            flush_at_exit=False,
            on_delivery=lambda goal, result: outcome.append(("delivered", goal, result)),
            on_failure=lambda goal, result: outcome.append(("failed", goal, result)),
        )
        tracker.track(
            args.name,
            visitor_id=args.visitor,
            session_id=args.session,
            metadata=metadata or None,
            description=args.description,
        )
    except (InvalidGoal, InvalidConfiguration, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tracker.close()
    for verdict, goal, result in outcome:
        if verdict == "delivered":
            event = f", event {result.event_id}" if result.event_id else ""
            print(
                f"delivered {goal.name!r} to {tracker.provider.name} (HTTP {result.status}{event})"
            )
            return 0
        print(f"failed: {result.reason}", file=sys.stderr)
    return 1


def _outbox(args: argparse.Namespace) -> int:
    path = args.path or os.environ.get("GOALTRACK_OUTBOX")
    if not path:
        print(f"error: {outbox_commands.NO_PATH}", file=sys.stderr)
        return 2
    if args.action != "status" and not os.path.exists(path):
        print(f"error: no outbox at {path}", file=sys.stderr)
        return 2
    if args.action == "status":
        return outbox_commands.status(path, print)
    if args.action == "dead-letters":
        return outbox_commands.dead_letters(path, print, args.limit)
    if args.action == "retry":
        return outbox_commands.retry(path, print, args.ids)
    if not args.yes:
        what = "dead letters" + (" and goals not delivered yet" if args.waiting else "")
        if input(f"delete all {what} in {path}? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return 1
    return outbox_commands.purge(path, print, waiting=args.waiting)


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"--metadata takes KEY=VALUE, got {item!r}")
    return key, value


def _check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problems = configuration_problems(
        api_key=settings.get("api_key"),
        provider=settings.get("provider"),
        api_url=settings.get("api_url"),
        website_id=settings.get("website_id"),
    )
    provider = settings.get("provider", "datafast")
    spec = PROVIDERS.get(str(provider).lower())
    print(f"provider: {provider}")
    print(f"api url:  {settings.get('api_url') or (spec.default_api_url if spec else '?')}")
    print(f"api key:  {'set' if settings.get('api_key') else 'not set'}")
    for problem in problems:
        print(f"{problem.level}: {problem}")
    if any(p.level == "error" for p in problems) or not settings.get("api_key"):
        return 1
    if args.offline:
        print("ok: configuration is valid (reachability not checked)")
        return 0
    tracker = GoalTracker(**settings, mode="disabled", flush_at_exit=False)
    ok, message = tracker.check_connection(timeout=args.timeout)
    print(("ok: " if ok else "error: ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
