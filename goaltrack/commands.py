"""The bodies of the ``check``, ``send`` and ``outbox`` commands, and their flags, written once.

Three thin front ends call them with their own configuration: ``goaltrack ...`` (the environment
and its options), ``manage.py goaltrack_check|goaltrack_send|goaltrack_outbox`` (the ``GOALTRACK``
setting) and ``flask goaltrack check|send|outbox`` (the app's config). The flags are defined here
(:data:`CHECK_FLAGS`, :data:`SEND_FLAGS`, :data:`OUTBOX_FLAGS`), so every front end spells them
alike. A body writes its lines through ``echo`` and raises :class:`CommandFailed` once, with the
message and exit status the front end reports. No output ever contains the API key.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from goaltrack.config import Problem
from goaltrack.delivery import DeliveryResult, InvalidConfiguration
from goaltrack.goals import Goal, InvalidGoal
from goaltrack.options import DEFAULT_PROVIDER, OPTIONS
from goaltrack.payments import Payment
from goaltrack.tracker import GoalTracker
from goaltrack.transports.outbox import Outbox
from goaltrack.transports.outbox.store import unusable

__all__ = [
    "CHECK_FLAGS",
    "OUTBOX_ACTIONS",
    "OUTBOX_FLAGS",
    "SEND_FLAGS",
    "CommandFailed",
    "Flag",
    "Source",
    "add_arguments",
    "check",
    "outbox",
    "send",
]

#: ``echo(line, tone)``: tone is "", "ok", "warning" or "error" (front ends may colour it).
Echo = Callable[[str, str], object]


class CommandFailed(Exception):
    """The command did not do its job: print ``message`` once, exit with ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Source:
    """Where a front end's configuration comes from, as its messages name it."""

    description: str
    """E.g. "settings.GOALTRACK, then GOALTRACK_* variables"."""
    name: str
    """E.g. "GOALTRACK setting", for "invalid GOALTRACK setting: ..."."""
    api_key: str
    """How to set the key, e.g. "GOALTRACK['API_KEY'] (or GOALTRACK_API_KEY)"."""
    outbox: str
    """How to set the outbox path, e.g. "GOALTRACK['OUTBOX'] (or GOALTRACK_OUTBOX)"."""


# -- flags ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One argument of a command, for argparse (:func:`add_arguments`) and click alike."""

    dest: str
    help: str
    names: tuple[str, ...] = ()
    """Option strings, the current one first; empty for a positional argument."""
    type: type = str
    default: Any = None
    kind: str = "value"
    """"value", "switch" (a boolean flag) or "repeat" (may be given several times); for a
    positional argument, "optional" when it may be left out."""
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


CHECK_FLAGS = (
    Flag("offline", "check the settings only, not the API", ("--offline",), kind="switch"),
    Flag("timeout", "seconds to wait for the API (default 5)", ("--timeout",), float, 5.0),
)
SEND_FLAGS = (
    Flag("name", "the goal name, e.g. signup (leave it out to send a payment)", kind="optional"),
    Flag(
        "visitor_id",
        "the visitor id (the provider's visitor cookie's value)",
        ("--visitor-id", "--visitor"),
    ),
    Flag("session_id", "the session id (Faurya, Flowsery)", ("--session-id", "--session")),
    Flag(
        "metadata",
        "a metadata entry; repeat for more",
        ("--metadata", "-m"),
        kind="repeat",
        metavar="KEY=VALUE",
    ),
    Flag("description", "a description (DataFast)", ("--description",)),
    Flag("timezone", "an IANA time zone (Flowsery)", ("--timezone",)),
    Flag("amount", "send a payment of this amount, e.g. 29.90 (0: a free trial)", ("--amount",)),
    Flag("currency", "the payment's ISO 4217 currency, e.g. USD", ("--currency",)),
    Flag("transaction_id", "the payment's transaction id", ("--transaction-id",)),
    Flag("email", "the paying customer's email", ("--email",)),
    Flag("customer_name", "the paying customer's name", ("--customer-name",)),
    Flag("customer_id", "the paying customer's id", ("--customer-id",)),
    Flag("renewal", "the payment renews a subscription", ("--renewal",), kind="switch"),
    Flag("refunded", "the payment is a refund", ("--refunded",), kind="switch"),
    Flag(
        "free_trial", "the payment starts a free trial (DataFast)", ("--free-trial",), kind="switch"
    ),
    Flag(
        "timeout", "seconds to try for, retries included (default 10)", ("--timeout",), float, 10.0
    ),
)
OUTBOX_ACTIONS = ("status", "dead-letters", "retry", "purge")
OUTBOX_FLAGS = (
    Flag("action", "what to do", choices=OUTBOX_ACTIONS),
    Flag("path", "the outbox file (default: the configured outbox)", ("--path",)),
    Flag(
        "ids",
        "retry: a dead letter's id (repeatable; default: all of them)",
        ("--id",),
        int,
        kind="repeat",
    ),
    Flag("limit", "dead-letters: how many to list (default 50)", ("--limit",), int, 50),
    Flag("waiting", "purge: also delete goals not delivered yet", ("--waiting",), kind="switch"),
    Flag("yes", "purge: do not ask for confirmation", ("--yes",), kind="switch"),
)


def add_arguments(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """Add *flags* to an argparse parser (the ``goaltrack`` CLI, Django's commands)."""
    for flag in flags:
        if not flag.names:
            parser.add_argument(
                flag.dest,
                help=flag.help,
                choices=flag.choices,
                nargs="?" if flag.kind == "optional" else None,
            )
        elif flag.kind == "switch":
            parser.add_argument(*flag.names, dest=flag.dest, action="store_true", help=flag.help)
        elif flag.kind == "repeat":
            parser.add_argument(
                *flag.names,
                dest=flag.dest,
                action="append",
                type=flag.type,
                default=[],
                metavar=flag.metavar,
                help=flag.help,
            )
        else:
            parser.add_argument(
                *flag.names, dest=flag.dest, type=flag.type, default=flag.default, help=flag.help
            )


# -- check ---------------------------------------------------------------------------------------


def check(
    settings: Mapping[str, Any],
    *,
    problems: Sequence[Problem],
    offline: bool,
    timeout: float,
    echo: Echo,
    source: Source,
) -> None:
    """Print the configuration (never the key) and its problems, then ask the API.

    *settings* are the tracker arguments in effect; *problems* what the front end's checks found
    (at least :func:`goaltrack.configuration_problems`). The API is asked with a test request
    that records nothing. Raises :class:`CommandFailed` when goals would not be delivered.
    """
    api_key = settings.get("api_key")
    echo(f"goaltrack settings ({source.description})", "")
    rows = [
        ("provider", settings.get("provider") or f"{DEFAULT_PROVIDER} (default)"),
        ("API URL", settings.get("api_url") or "the provider's default"),
        ("API key", "set" if api_key else "not set"),
        ("website id", settings.get("website_id") or "not set"),
        ("mode", settings.get("mode") or OPTIONS["mode"].default),
    ]
    for label, value in rows:
        echo(f"  {label + ':':<12} {value}", "")
    echo("checks:", "")
    if not problems:
        echo("  OK: no problems found", "ok")
    for problem in problems:
        hint = f" HINT: {problem.hint}" if problem.hint else ""
        echo(f"  {problem.id}: {problem.message}{hint}", problem.level)
    has_errors = any(problem.level == "error" for problem in problems)
    failed = has_errors or not api_key
    echo("API:", "")
    if offline:
        echo("  not contacted (--offline)", "")
    elif not api_key or has_errors:
        echo("  not contacted: fix the settings first", "")
    else:
        tracker = GoalTracker(
            api_key,
            provider=settings.get("provider") or DEFAULT_PROVIDER,
            api_url=settings.get("api_url"),
            website_id=settings.get("website_id"),
            proxy=settings.get("proxy"),
            mode="disabled",
            flush_at_exit=False,
        )
        ok, detail = tracker.check_connection(timeout)
        echo(f"  {'OK' if ok else 'FAILED'}: {detail}", "ok" if ok else "error")
        failed = failed or not ok
    if failed:
        raise CommandFailed("goaltrack is not ready to deliver goals (see above)")
    echo("goaltrack is ready to deliver goals", "ok")


# -- send ----------------------------------------------------------------------------------------


def send(
    settings: Mapping[str, Any],
    *,
    name: str | None = None,
    visitor_id: str | None = None,
    session_id: str | None = None,
    metadata: Sequence[str] = (),
    description: str | None = None,
    timezone: str | None = None,
    amount: str | None = None,
    currency: str | None = None,
    transaction_id: str | None = None,
    email: str | None = None,
    customer_name: str | None = None,
    customer_id: str | None = None,
    renewal: bool = False,
    refunded: bool = False,
    free_trial: bool = False,
    timeout: float = 10.0,
    echo: Echo,
    source: Source,
) -> None:
    """Send one goal *name*, or one payment (``--amount``, ``--currency``,
    ``--transaction-id``), now (inline, retries included within *timeout*) and print the API's
    answer.

    *settings* are the tracker arguments in effect; *metadata* ``KEY=VALUE`` entries. Raises
    :class:`CommandFailed`: status 2 for bad input or configuration, 1 when not delivered.
    """
    paying = any((amount, currency, transaction_id, email, customer_name, customer_id)) or any(
        (renewal, refunded, free_trial)
    )
    if paying and (name is not None or metadata or description or timezone):
        raise CommandFailed(
            "send takes a goal NAME (with --metadata, --description, --timezone) or a payment "
            "(--amount, --currency, --transaction-id), not both",
            2,
        )
    if paying and not (amount and currency and transaction_id):
        raise CommandFailed("a payment needs --amount, --currency and --transaction-id", 2)
    if not paying and name is None:
        raise CommandFailed(
            "send what? a goal NAME, or a payment: --amount, --currency and --transaction-id", 2
        )
    entries: dict[str, str] = {}
    for entry in metadata:
        key, sep, value = entry.partition("=")
        if not sep:
            raise CommandFailed(f"--metadata takes KEY=VALUE, not {entry!r}", 2)
        entries[key] = value
    if not settings.get("api_key"):
        raise CommandFailed(f"no API key: set {source.api_key}", 2)
    outcome: list[tuple[bool, DeliveryResult]] = []
    options = {key: value for key, value in settings.items() if value is not None}
    options.pop("outbox", None)  # inline: the outbox is not for this goal
    options.update(
        mode="sync",
        sync_deadline=timeout,
        timeout=min(float(options.get("timeout", timeout)), timeout),
        flush_at_exit=False,
        on_delivery=lambda goal, result: outcome.append((True, result)),
        on_failure=lambda goal, result: outcome.append((False, result)),
        on_drop=None,
    )
    try:
        tracker = GoalTracker(**options)
    except (InvalidConfiguration, TypeError, ValueError) as exc:
        raise CommandFailed(f"invalid {source.name}: {exc}", 2) from None
    tracker._settlement.log_failures = False  # the CommandFailed below says it, once
    item: Goal | Payment
    with tracker:
        try:
            if paying:
                item = Payment.create(
                    tracker.provider,
                    _amount(str(amount)),
                    str(currency),
                    str(transaction_id),
                    visitor_id=visitor_id,
                    session_id=session_id,
                    email=email,
                    name=customer_name,
                    customer_id=customer_id,
                    renewal=renewal,
                    refunded=refunded,
                    free_trial=free_trial or None,
                )
            else:
                assert name is not None
                item = Goal.create(
                    tracker.provider,
                    name,
                    visitor_id=visitor_id,
                    session_id=session_id,
                    metadata=entries or None,
                    description=description,
                    timezone=timezone,
                )
        except InvalidGoal as exc:
            raise CommandFailed(f"invalid {'payment' if paying else 'goal'}: {exc}", 2) from None
        tracker.submit(item)
    if not outcome:
        raise CommandFailed(f"{item.label} was not sent")
    delivered, result = outcome[0]
    status = f"HTTP {result.status}" if result.status is not None else "no answer"
    if not delivered:
        raise CommandFailed(f"not delivered to {tracker.provider.name}: {result.reason or status}")
    event = f", event id {result.event_id}" if result.event_id else ""
    duplicate = ", recorded before: a duplicate" if result.duplicate else ""
    echo(f"delivered {item.label} to {tracker.provider.name} ({status}{event}{duplicate})", "ok")


def _amount(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise CommandFailed(f"--amount takes a number such as 29.90, not {text!r}", 2) from None


# -- outbox --------------------------------------------------------------------------------------


def outbox(
    action: str,
    path: str | os.PathLike[str] | None,
    *,
    ids: Sequence[int] = (),
    limit: int = 50,
    waiting: bool = False,
    yes: bool = False,
    confirm: Callable[[str], bool],
    echo: Echo,
    source: Source,
) -> None:
    """Look after the SQLite outbox at *path*: status, dead-letters, retry, purge.

    Needs no API key (the file holds none). ``purge`` asks ``confirm(question)`` first unless
    *yes*. Raises :class:`CommandFailed` (status 2) without an outbox to work on.
    """
    if action not in OUTBOX_ACTIONS:
        raise CommandFailed(f"unknown outbox action {action!r}: one of {OUTBOX_ACTIONS}", 2)
    if not path:
        raise CommandFailed(f"no outbox configured: pass --path, or set {source.outbox}", 2)
    path = os.fspath(path)
    if action != "status" and not os.path.exists(path):
        raise CommandFailed(f"no outbox at {path}", 2)
    try:
        _outbox_action(
            action, path, ids=ids, limit=limit, waiting=waiting, yes=yes, confirm=confirm, echo=echo
        )
    except InvalidConfiguration as exc:  # not a database, truncated, newer schema, read-only
        raise CommandFailed(str(exc), 2) from exc
    except sqlite3.Error as exc:  # damage found past the checks made on opening
        raise CommandFailed(str(unusable(path, exc)), 2) from exc


def _outbox_action(
    action: str,
    path: str,
    *,
    ids: Sequence[int],
    limit: int,
    waiting: bool,
    yes: bool,
    confirm: Callable[[str], bool],
    echo: Echo,
) -> None:
    if action == "status":
        with Outbox(path) as store:
            report = store.status()
        oldest = "-" if report.oldest_age is None else f"{report.oldest_age:.0f} s ago"
        for line in (
            f"outbox:       {report.path}",
            f"waiting:      {report.waiting}",
            f"  in flight:  {report.leased}",
            f"  retrying:   {report.retrying}",
            f"oldest:       {oldest}",
            f"dead letters: {report.dead_letters}",
            # Whose the waiting goals are: only a tracker of that provider, goals URL and key
            # (shown by its fingerprint, never the key) delivers them.
            *(
                f"  {count:>6} for {who.provider} {who.target} (key {who.key_fp})"
                for who, count in report.by_identity.items()
            ),
        ):
            echo(line, "")
    elif action == "dead-letters":
        _dead_letters(path, limit, echo)
    elif action == "retry":
        with Outbox(path) as store:
            moved = store.retry_dead_letters(list(ids) or None)
        echo(
            f"{moved} dead letter(s) moved back to the outbox; a running app delivers them "
            "(or the next one that starts with this outbox)",
            "ok",
        )
    else:
        what = "dead letters" + (" and goals not delivered yet" if waiting else "")
        if not yes and not confirm(f"delete all {what} in {path}?"):
            raise CommandFailed("nothing deleted")
        with Outbox(path) as store:
            dead = store.purge(dead_letters=True, waiting=False)
            pending = store.purge(dead_letters=False, waiting=True) if waiting else 0
        deleted = f", {pending} waiting goal(s) deleted" if waiting else ""
        echo(f"{dead} dead letter(s) deleted{deleted}", "ok")


def _dead_letters(path: str, limit: int, echo: Echo) -> None:
    with Outbox(path) as store:
        letters = store.dead_letters(limit)
        total = store.status().dead_letters
    if not letters:
        echo("no dead letters", "")
        return
    for letter in letters:
        item = letter.goal
        failed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.failed_at))
        echo(
            f"#{letter.id} {failed} {item.provider.name} {item.label} "
            f"visitor {item.visitor_id} after {letter.attempts} attempt(s): {letter.reason}",
            "",
        )
    if total > len(letters):
        echo(f"... and {total - len(letters)} more", "")
