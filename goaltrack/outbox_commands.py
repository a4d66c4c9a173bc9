"""The ``outbox`` commands, shared by ``goaltrack outbox``, ``manage.py goaltrack_outbox`` and
``flask goaltrack outbox``: status, dead-letters, retry, purge.

Each function takes the outbox path and writes plain lines through ``echo``; each returns the
exit status. They need no API key and never print one (the outbox file holds none).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from goaltrack.transports.outbox import Outbox

__all__ = ["ACTIONS", "add_arguments", "dead_letters", "purge", "retry", "status"]

Echo = Callable[[str], object]

ACTIONS = ("status", "dead-letters", "retry", "purge")
NO_PATH = (
    "no outbox configured: pass --path, or set GOALTRACK_OUTBOX "
    "(Django: GOALTRACK['OUTBOX'], Flask: GOALTRACK_OUTBOX)"
)


def add_arguments(parser: argparse.ArgumentParser, *, default_path: str) -> None:
    """The arguments of an argparse-based ``outbox`` command (the CLI, Django's command)."""
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--path", help=f"the outbox file (default: {default_path})")
    parser.add_argument(
        "--id",
        dest="ids",
        action="append",
        type=int,
        default=[],
        help="retry: a dead letter's id (repeatable; default: all of them)",
    )
    parser.add_argument("--limit", type=int, default=50, help="dead-letters: how many to list")
    parser.add_argument(
        "--waiting", action="store_true", help="purge: also delete goals not delivered yet"
    )


def status(path: str, echo: Echo) -> int:
    with Outbox(path) as outbox:
        report = outbox.status()
    oldest = "-" if report.oldest_age is None else f"{report.oldest_age:.0f} s ago"
    echo(f"outbox:       {report.path}")
    echo(f"waiting:      {report.waiting}")
    echo(f"  in flight:  {report.leased}")
    echo(f"  retrying:   {report.retrying}")
    echo(f"oldest:       {oldest}")
    echo(f"dead letters: {report.dead_letters}")
    return 0


def dead_letters(path: str, echo: Echo, limit: int | None = 50) -> int:
    with Outbox(path) as outbox:
        letters = outbox.dead_letters(limit)
        total = outbox.status().dead_letters
    if not letters:
        echo("no dead letters")
        return 0
    for letter in letters:
        goal = letter.goal
        failed = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.failed_at))
        echo(
            f"#{letter.id} {failed} {goal.provider.name} goal {goal.name!r} "
            f"visitor {goal.visitor_id} after {letter.attempts} attempt(s): {letter.reason}"
        )
    if total > len(letters):
        echo(f"... and {total - len(letters)} more")
    return 0


def retry(path: str, echo: Echo, ids: Sequence[int] = ()) -> int:
    with Outbox(path) as outbox:
        moved = outbox.retry_dead_letters(list(ids) or None)
    echo(
        f"{moved} dead letter(s) moved back to the outbox; a running app delivers them "
        "(or the next one that starts with this outbox)"
    )
    return 0


def purge(path: str, echo: Echo, *, waiting: bool = False) -> int:
    with Outbox(path) as outbox:
        dead = outbox.purge(dead_letters=True, waiting=False)
        pending = outbox.purge(dead_letters=False, waiting=True) if waiting else 0
    echo(
        f"{dead} dead letter(s) deleted"
        + (f", {pending} waiting goal(s) deleted" if waiting else "")
    )
    return 0
