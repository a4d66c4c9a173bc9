"""The outbox file: its SQLite schema and every statement run on it, and its administration.

The transport (:mod:`goaltrack.transports.outbox.transport`) decides *when* to store, claim,
reschedule or dead-letter a goal; this module owns *how*, so the file's layout is read and written
in one place. The admin class :class:`Outbox` (``goaltrack outbox status|dead-letters|retry|purge``)
needs no API key: the file never holds one.

Rows are goals still to deliver (``goals``) and final failures (``dead_letters``). A row keeps the
``target`` URL it was tracked for, but any tracker of the row's provider that opens the file
delivers it with its own configuration (after a deploy changed ``api_url``, say); rows of another
provider cannot be sent by it and are moved to the dead letters, with a warning.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from goaltrack.goals import Goal
from goaltrack.providers import get_provider

__all__ = [
    "DeadLetter",
    "Outbox",
    "OutboxStatus",
    "OutboxStore",
    "StoredGoal",
    "connect",
    "decode_goal",
    "encode_goal",
]

#: How long a write waits for another process's write transaction before giving up.
BUSY_TIMEOUT_MS = 5_000
_NO_LIMIT = 2**62
_REASON_CHARS = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS goals (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    may_have_arrived INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    strikes INTEGER NOT NULL DEFAULT 0,
    strike_mark TEXT
);
CREATE INDEX IF NOT EXISTS goals_due ON goals (due_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL
);
"""

#: Columns added since the first release, for files an older goaltrack created.
_ADDED_COLUMNS = {
    "strikes": "INTEGER NOT NULL DEFAULT 0",
    "strike_mark": "TEXT",
}


def encode_goal(goal: Goal) -> str:
    """The goal as stored: its validated fields and provider name (never the API key)."""
    return json.dumps(
        [
            goal.provider.name,
            goal.name,
            goal.visitor_id,
            goal.session_id,
            dict(goal.metadata) if goal.metadata else None,
            goal.description,
            goal.timezone,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_goal(text: str) -> Goal:
    """A stored goal back as a :class:`Goal` (already validated when it was stored)."""
    provider, name, visitor_id, session_id, metadata, description, timezone = json.loads(text)
    return Goal(
        get_provider(provider), name, visitor_id, session_id, metadata, description, timezone
    )


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to the outbox at *path* (created or upgraded if need be), WAL, autocommit."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        os.fspath(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,  # shared by this process's threads, under the transport's lock
    )
    conn.execute("PRAGMA journal_mode=WAL")
    # Each commit is written to the file before ``track`` returns, so it survives the process
    # (kill -9, OOM); without fsyncs (a commit costs a few writes, not a disk flush) it may not
    # survive the machine losing power.
    conn.execute("PRAGMA synchronous=OFF")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(goals)")}
    if not columns or not columns.issuperset(_ADDED_COLUMNS) or not _has_index(conn):
        with _write(conn):
            if columns:
                for name, kind in _ADDED_COLUMNS.items():
                    if name not in columns:
                        conn.execute(f"ALTER TABLE goals ADD COLUMN {name} {kind}")
                conn.execute("DROP INDEX IF EXISTS goals_by_due")  # claims no longer by target
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
    return conn


def _has_index(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'goals_due'").fetchone()
    return row is not None


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (no deadlock-prone read-then-upgrade)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class StoredGoal:
    """A goal claimed from the file for one delivery attempt."""

    id: int
    text: str
    created_at: float
    attempts: int
    strikes: int
    strike_mark: str | None
    may_have_arrived: bool


@dataclass(frozen=True)
class Expired:
    """A goal removed from the file by an age limit or a provider mismatch (now a dead letter)."""

    text: str
    reason: str


class OutboxStore:
    """The statements the transport runs. Not thread-safe: the transport holds its lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.conn = connect(self.path)

    def add(self, target: str, text: str, now: float) -> int:
        cursor = self.conn.execute(
            "INSERT INTO goals (target, goal, created_at, due_at) VALUES (?, ?, ?, ?)",
            (target, text, now, now),
        )
        return cursor.lastrowid or 0

    def depth(self) -> int:
        (depth,) = self.conn.execute("SELECT count(*) FROM goals").fetchone()
        return int(depth)

    def has_goals(self, up_to: int | None = None) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM goals WHERE id <= ? LIMIT 1", (_NO_LIMIT if up_to is None else up_to,)
        ).fetchone()
        return row is not None

    def claim(
        self, owner: str, lease: float, now: float, up_to: int | None
    ) -> tuple[StoredGoal | None, float | None]:
        """Lease the next due goal to *owner*; else (None, when the next retry is due, if any).

        A goal whose lease had expired (its process died mid-attempt) is marked as possibly
        delivered already.
        """
        conn = self.conn
        with _write(conn):
            row = conn.execute(
                "UPDATE goals SET lease_owner = ?, lease_until = ?,"
                " may_have_arrived = may_have_arrived OR lease_owner IS NOT NULL"
                " WHERE id = (SELECT id FROM goals WHERE due_at <= ? AND lease_until <= ?"
                " AND id <= ? ORDER BY due_at, id LIMIT 1)"
                " RETURNING id, goal, created_at, attempts, strikes, strike_mark, may_have_arrived",
                (owner, now + lease, now, now, _NO_LIMIT if up_to is None else up_to),
            ).fetchone()
            if row is not None:
                row_id, text, created_at, attempts, strikes, strike_mark, arrived = row
                stored = StoredGoal(
                    row_id, text, created_at, attempts, strikes, strike_mark, bool(arrived)
                )
                return stored, None
            # The next retry due (the index answers at once); goals leased by other processes
            # are looked at again at the next poll.
            (next_due,) = conn.execute(
                "SELECT min(due_at) FROM goals WHERE due_at > ?", (now,)
            ).fetchone()
        return None, next_due

    def delivered(self, row_id: int) -> None:
        self.conn.execute("DELETE FROM goals WHERE id = ?", (row_id,))

    def reschedule(
        self,
        row_id: int,
        owner: str,
        *,
        due_at: float,
        attempts: int,
        strikes: int,
        strike_mark: str | None,
        may_have_arrived: bool,
        error: str,
    ) -> None:
        """Release *owner*'s lease on a goal that failed transiently, due again at *due_at*."""
        self.conn.execute(
            "UPDATE goals SET due_at = ?, attempts = ?, strikes = ?, strike_mark = ?,"
            " may_have_arrived = ?, last_error = ?, lease_owner = NULL, lease_until = 0"
            " WHERE id = ? AND lease_owner = ?",
            (
                due_at,
                attempts,
                strikes,
                strike_mark,
                may_have_arrived,
                error[:_REASON_CHARS],
                row_id,
                owner,
            ),
        )

    def dead_letter(
        self, row_id: int, attempts: int, status: int | None, reason: str, now: float
    ) -> None:
        with _write(self.conn) as conn:
            conn.execute(
                "INSERT INTO dead_letters"
                " (target, goal, created_at, failed_at, attempts, status, reason)"
                " SELECT target, goal, created_at, ?, ?, ?, ? FROM goals WHERE id = ?",
                (now, attempts, status, reason[:_REASON_CHARS], row_id),
            )
            conn.execute("DELETE FROM goals WHERE id = ?", (row_id,))

    def due_now(self, now: float) -> int:
        """Goals held back by an outage (not by a failure of their own) are due at *now*."""
        return int(
            self.conn.execute(
                "UPDATE goals SET due_at = ? WHERE due_at > ? AND strike_mark IS NULL"
                " AND lease_until <= ?",
                (now, now, now),
            ).rowcount
        )

    def expire(self, provider: str, max_age: float, now: float) -> list[Expired]:
        """Move to the dead letters goals older than *max_age*, and goals of another provider.

        Goals leased to a live process are left to it. Returns what was moved.
        """
        too_old = f"older than max_age ({max_age:g} s) in the outbox; not sent"
        with _write(self.conn) as conn:
            rows = conn.execute(
                "DELETE FROM goals WHERE lease_until <= ?"
                " AND (created_at < ? OR json_extract(goal, '$[0]') IS NOT ?)"
                " RETURNING target, goal, created_at, attempts,"
                " json_extract(goal, '$[0]') IS NOT ?",
                (now, now - max_age, provider, provider),
            ).fetchall()
            moved: list[Expired] = []
            letters = []
            for target, text, created, attempts, other_provider in rows:
                if other_provider:
                    stored_for = _provider_of(text)
                    reason = (
                        f"stored for provider {stored_for!r}, but the tracker using this outbox "
                        f"sends to {provider!r}; not sent"
                    )
                else:
                    reason = too_old
                moved.append(Expired(text, reason))
                letters.append((target, text, created, now, attempts, reason))
            conn.executemany(
                "INSERT INTO dead_letters"
                " (target, goal, created_at, failed_at, attempts, status, reason)"
                " VALUES (?, ?, ?, ?, ?, NULL, ?)",
                letters,
            )
        return moved

    def leases(self, now: float) -> list[str]:
        """Owners holding a live lease."""
        rows = self.conn.execute(
            "SELECT DISTINCT lease_owner FROM goals WHERE lease_until > ?", (now,)
        ).fetchall()
        return [owner for (owner,) in rows if owner]

    def release(self, owners: list[str]) -> None:
        with _write(self.conn) as conn:
            conn.executemany(
                "UPDATE goals SET lease_until = 0 WHERE lease_owner = ?",
                [(owner,) for owner in owners],
            )

    def close(self) -> None:
        self.conn.close()


def _provider_of(text: str) -> str:
    try:
        return str(json.loads(text)[0])
    except (ValueError, TypeError, IndexError, KeyError):
        return "?"


@dataclass(frozen=True)
class OutboxStatus:
    """What ``goaltrack outbox status`` shows."""

    path: str
    waiting: int
    leased: int
    retrying: int
    oldest_age: float | None
    """Seconds since the oldest waiting goal was tracked."""
    dead_letters: int
    by_destination: dict[str, int]
    """Waiting goals by the provider and URL they were tracked for (``"datafast https://…"``):
    a tracker of that provider delivers them to its own URL."""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    goal: Goal
    created_at: float
    failed_at: float
    attempts: int
    status: int | None
    reason: str


class Outbox:
    """Administration of an outbox file: status, dead letters, retry, purge. No API key needed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn = connect(self.path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def status(self) -> OutboxStatus:
        now = time.time()
        waiting, leased, retrying, oldest = self._conn.execute(
            "SELECT count(*), sum(lease_until > ?), sum(attempts > 0 AND lease_until <= ?),"
            " min(created_at) FROM goals",
            (now, now),
        ).fetchone()
        (dead,) = self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        destinations = self._conn.execute(
            "SELECT json_extract(goal, '$[0]') || ' ' || target, count(*) FROM goals"
            " GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        return OutboxStatus(
            self.path,
            waiting,
            leased or 0,
            retrying or 0,
            None if oldest is None else max(0.0, now - oldest),
            dead,
            {str(destination): int(count) for destination, count in destinations},
        )

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT id, goal, created_at, failed_at, attempts, status, reason"
            " FROM dead_letters ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [DeadLetter(row[0], decode_goal(row[1]), *row[2:]) for row in rows]

    def retry_dead_letters(self, ids: list[int] | None = None) -> int:
        """Move dead letters (all, or those *ids*) back to the outbox with fresh attempts."""
        now = time.time()
        chosen = None if ids is None else json.dumps(ids)
        with _write(self._conn) as conn:
            conn.execute(
                "INSERT INTO goals (target, goal, created_at, due_at) SELECT target, goal, ?, ?"
                " FROM dead_letters WHERE (? IS NULL OR id IN (SELECT value FROM json_each(?)))"
                " ORDER BY id",
                (now, now, chosen, chosen),
            )
            moved = conn.execute(
                "DELETE FROM dead_letters"
                " WHERE (? IS NULL OR id IN (SELECT value FROM json_each(?)))",
                (chosen, chosen),
            ).rowcount
        return int(moved)

    def purge(self, *, dead_letters: bool = True, waiting: bool = False) -> int:
        """Delete dead letters and/or goals still waiting for delivery; returns how many."""
        removed = 0
        with _write(self._conn) as conn:
            if dead_letters:
                removed += conn.execute("DELETE FROM dead_letters").rowcount
            if waiting:
                removed += conn.execute("DELETE FROM goals").rowcount
        return removed
