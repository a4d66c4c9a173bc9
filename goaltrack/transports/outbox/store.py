"""The outbox file: its SQLite schema and every statement run on it, and its administration.

The transport (:mod:`goaltrack.transports.outbox.transport`) decides *when* to store, claim,
reschedule or dead-letter a goal; this module owns *how*, so the file's layout is read and written
in one place. The admin class :class:`Outbox` (``goaltrack outbox status|dead-letters|retry|purge``)
needs no API key: the file never holds one.

Rows are goals still to deliver (``goals``) and final failures (``dead_letters``). Each row belongs
to one destination, its :class:`Identity`: the provider, the goals URL it was tracked for (the
``api_url`` and website id) and the fingerprint of the API key (:func:`key_fingerprint`, never the
key). A tracker claims only its own identity's rows, so two sites (or staging and production)
sharing one file never send each other's goals; ``status`` shows the others.

A goal's retry bookkeeping is one column, ``retry``: its
:class:`~goaltrack.retry.RetryState` as JSON (``{}`` until it failed), which only
:func:`~goaltrack.retry.judge` changes; this module reads one of its keys, ``strike_mark``
(whether an outage held the goal back), and ``failures`` for the dead letters' attempt count.

A file of another schema version is not migrated: one written by a pre-release layout is
re-created if it holds nothing, else refused, as is a file of a newer schema, one that is not an
outbox, is truncated or cannot be written: :class:`~goaltrack.delivery.InvalidConfiguration` names
the path and the cause.

Times in the file are wall-clock seconds. A transport reads them from a :class:`ProcessClock`,
anchored once per process on its :class:`~goaltrack.retry.Clock` and advanced by its monotonic
clock, so a wall-clock step while it runs changes none of its schedules or ages; the
administration reads :func:`wall_time` (replaceable in tests).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from goaltrack.delivery import InvalidConfiguration
from goaltrack.items import Tracked, decode, encode
from goaltrack.redaction import redact
from goaltrack.retry import Clock, RetryState
from goaltrack.transports.outbox import gate

__all__ = [
    "SCHEMA_VERSION",
    "DeadLetter",
    "Identity",
    "Outbox",
    "OutboxStatus",
    "OutboxStore",
    "ProcessClock",
    "StoredGoal",
    "close",
    "connect",
    "decode_goal",
    "encode_goal",
    "is_contention",
    "unusable",
    "wall_time",
]

#: The layout this goaltrack reads and writes (``PRAGMA user_version``).
SCHEMA_VERSION = 3
#: How long an administration command waits for another process's write transaction.
ADMIN_BUSY_TIMEOUT = 5.0
_NO_LIMIT = 2**62
_REASON_CHARS = 300

#: The wall clock of the administration and of a transport given no clock (tests step it).
wall_time = time.time

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _gated(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """*method* runs its SQLite calls inside the fork gate (:mod:`.gate`)."""

    @functools.wraps(method)
    def gated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gate.inside():
            return method(*args, **kwargs)

    return gated


_SCHEMA = """
CREATE TABLE IF NOT EXISTS goals (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    target TEXT NOT NULL,
    key_fp TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    retry TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS goals_claim ON goals (key_fp, target, due_at);
CREATE INDEX IF NOT EXISTS goals_leased ON goals (lease_until) WHERE lease_owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    provider TEXT NOT NULL,
    key_fp TEXT NOT NULL
);
"""

_GOAL_COLUMNS = {
    "id",
    "provider",
    "target",
    "key_fp",
    "goal",
    "created_at",
    "due_at",
    "retry",
    "lease_owner",
    "lease_until",
    "last_error",
}


@dataclass(frozen=True)
class Identity:
    """Whose a row is: provider, goals URL (api_url + website id) and key fingerprint."""

    provider: str
    target: str
    key_fp: str

    def __str__(self) -> str:
        return f"{self.provider} {self.target} key {self.key_fp}"


class ProcessClock:
    """Wall-clock seconds for the file, anchored once and advanced by the monotonic clock.

    A wall-clock step (NTP, a VM resumed) after the anchor moves nothing this process schedules;
    only ages across restarts (a new anchor) see it. Without *clock*: :func:`wall_time` and
    ``time.monotonic()``.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._monotonic = time.monotonic if clock is None else clock.monotonic
        self._wall0 = wall_time() if clock is None else clock.wall()
        self._mono0 = self._monotonic()

    def now(self) -> float:
        return self._wall0 + (self._monotonic() - self._mono0)


#: An item (goal or payment) as the ``goal`` column stores it: :func:`goaltrack.items.encode`.
encode_goal = encode
#: A stored item back, already validated when it was stored: :func:`goaltrack.items.decode`.
decode_goal = decode


def is_contention(exc: sqlite3.Error) -> bool:
    """True when *exc* only says another connection holds the lock (try again soon)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _unusable(path: str, cause: str) -> InvalidConfiguration:
    return InvalidConfiguration(f"the outbox {path} cannot be used: {redact(cause, None)}")


def unusable(path: str, exc: sqlite3.Error) -> InvalidConfiguration:
    """The error that refuses the outbox at *path* for *exc*, with its cause in words."""
    return _unusable(path, _sqlite_cause(path, exc))


def _create_private(path: str) -> None:
    """Create the file 0600 if it does not exist: SQLite gives its -wal and -shm the same mode."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _check_header(path: str) -> None:
    """Refuse a file that is not a SQLite database, or shorter than its header says."""
    try:
        with open(path, "rb") as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise _unusable(path, f"cannot read it: {exc.strerror or exc}") from exc
    if not header:
        return  # empty: a new outbox
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise _unusable(path, "it is not a SQLite database (or is truncated)")
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    counter, pages = struct.unpack(">II", header[24:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    if valid_for == counter and pages and size < pages * page_size:
        raise _unusable(
            path, f"it is truncated ({size} bytes, its header says {pages * page_size})"
        )


def connect(
    path: str | os.PathLike[str], *, timeout: float = ADMIN_BUSY_TIMEOUT, create: bool = True
) -> sqlite3.Connection:
    """A connection to the outbox at *path* (created or upgraded if need be), WAL, autocommit.

    Raises :class:`InvalidConfiguration` naming *path* when it cannot be an outbox. The caller
    owns the connection: it closes it (:func:`close`), never leaves it to the garbage collector.
    """
    path = os.fspath(path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if create:
            _create_private(path)
    except OSError as exc:
        raise _unusable(path, _os_cause(exc)) from exc
    _check_header(path)
    with gate.inside():
        gate.close_unclosed()
        return _open(path, timeout)


def close(conn: sqlite3.Connection) -> None:
    """Close *conn*, inside the fork gate."""
    with gate.inside():
        conn.close()


def _open(path: str, timeout: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            path,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,  # shared by this process's threads, under a lock
        )
    except sqlite3.Error as exc:
        raise _unusable(path, _sqlite_cause(path, exc)) from exc
    try:
        _prepare(conn, path)
    except InvalidConfiguration:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, _sqlite_cause(path, exc)) from exc
    return conn


def _os_cause(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"its directory is not writable ({exc.strerror})"
    return str(exc.strerror or exc)


def _sqlite_cause(path: str, exc: sqlite3.Error) -> str:
    text = str(exc)
    lowered = text.lower()
    if "not a database" in lowered:
        return "it is not a SQLite database"
    if "malformed" in lowered:
        return "it is damaged or truncated (database disk image is malformed)"
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.access(directory, os.W_OK):
            return f"its directory {directory} is not writable ({text})"
        return f"it cannot be written ({text}; is it or its directory read-only?)"
    if "disk is full" in lowered or "disk i/o" in lowered:
        return f"it cannot be written ({text})"
    return text


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise _unusable(
            path,
            f"it has schema version {version}, made by a newer goaltrack (this one reads up to "
            f"{SCHEMA_VERSION}); upgrade goaltrack, or point the outbox at another file",
        )
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        raise _unusable(path, f"it cannot be put in WAL mode (journal mode {mode and mode[0]})")
    # Each commit is written to the file before ``track`` returns, so it survives the process
    # (kill -9, OOM); without fsyncs (a commit costs a few writes, not a disk flush) it may not
    # survive the machine losing power.
    conn.execute("PRAGMA synchronous=OFF")
    if version == SCHEMA_VERSION:
        _check_columns(conn, path)
        # Reading the newest rows touches the end of the table: a cut file fails here.
        conn.execute("SELECT max(id) FROM goals").fetchone()
        return
    with _write(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()  # another process won?
        if version == SCHEMA_VERSION:
            return
        held = 0
        for table in ("goals", "dead_letters"):
            if _columns(conn, table):
                (rows,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
                held += int(rows)
        if held:
            raise _unusable(
                path,
                f"it was written by a pre-release goaltrack (schema version {version}; this one "
                f"reads {SCHEMA_VERSION}) and holds {held} row(s) it cannot read; deliver them "
                "with the goaltrack that wrote it, or move the file away",
            )
        # Empty (new, or an empty file of a pre-release layout): made afresh.
        conn.execute("DROP TABLE IF EXISTS goals")
        conn.execute("DROP TABLE IF EXISTS dead_letters")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[bool, object]]:
    return {row[1]: (bool(row[3]), row[4]) for row in conn.execute(f"PRAGMA table_info({table})")}


def _check_columns(conn: sqlite3.Connection, path: str) -> None:
    """A column this goaltrack cannot fill (NOT NULL, no default) means a newer layout."""
    for name, (not_null, default) in _columns(conn, "goals").items():
        if name not in _GOAL_COLUMNS and not_null and default is None:
            raise _unusable(
                path,
                f"its goals table has a required column {name!r} this goaltrack does not know "
                "(made by a newer goaltrack?); upgrade goaltrack, or use another file",
            )


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (no deadlock-prone read-then-upgrade)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class StoredGoal:
    """A goal claimed from the file for one delivery attempt."""

    id: int
    text: str
    created_at: float
    retry: str
    """Its :class:`~goaltrack.retry.RetryState`, as JSON."""
    taken_over: bool
    """It was leased before, and that lease ended without a verdict (its process died
    mid-attempt, maybe after sending it)."""


@dataclass(frozen=True)
class Expired:
    """A goal removed from the file by the age limit (now a dead letter)."""

    text: str
    reason: str


class OutboxStore:
    """The statements a transport runs on one connection, for one :class:`Identity`.

    Not thread-safe: the transport serialises the calls on each store. Each runs inside the fork
    gate. The store owns its connection: :meth:`close` closes it.
    """

    def __init__(self, conn: sqlite3.Connection, identity: Identity) -> None:
        self.conn = conn
        self.identity = identity
        self._mine = (identity.key_fp, identity.target, identity.provider)

    def close(self) -> None:
        close(self.conn)

    @_gated
    def add(self, text: str, now: float) -> int:
        ident = self.identity
        cursor = self.conn.execute(
            "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (ident.target, text, now, now, ident.provider, ident.key_fp),
        )
        return cursor.lastrowid or 0

    @_gated
    def add_many(self, items: Iterable[tuple[str, float]]) -> list[int]:
        """Store several goals in one transaction; returns their row ids."""
        ident = self.identity
        ids: list[int] = []
        with _write(self.conn) as conn:
            for text, created in items:
                cursor = conn.execute(
                    "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (ident.target, text, created, created, ident.provider, ident.key_fp),
                )
                ids.append(cursor.lastrowid or 0)
        return ids

    @_gated
    def depth(self) -> int:
        """Rows in the file, whoever's (the ``max_goals`` limit is the file's)."""
        (depth,) = self.conn.execute("SELECT count(*) FROM goals").fetchone()
        return int(depth)

    @_gated
    def own_depth(self) -> int:
        (depth,) = self.conn.execute(
            "SELECT count(*) FROM goals WHERE key_fp = ? AND target = ? AND provider = ?",
            self._mine,
        ).fetchone()
        return int(depth)

    @_gated
    def has_goals(self, up_to: int | None = None, skip: Iterable[int] = ()) -> bool:
        skipped = json.dumps(sorted(skip))
        row = self.conn.execute(
            "SELECT 1 FROM goals WHERE key_fp = ? AND target = ? AND provider = ? AND id <= ?"
            " AND id NOT IN (SELECT value FROM json_each(?)) LIMIT 1",
            (*self._mine, _NO_LIMIT if up_to is None else up_to, skipped),
        ).fetchone()
        return row is not None

    @_gated
    def remaining(self, ids: Iterable[int]) -> set[int]:
        """Which of the rows *ids* are still in the file (not delivered nor dead-lettered)."""
        return {
            int(row_id)
            for (row_id,) in self.conn.execute(
                "SELECT id FROM goals WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(ids)),),
            )
        }

    @_gated
    def claim(
        self,
        owner: str,
        lease: float,
        now: float,
        horizon: float,
        up_to: int | None,
        prefer: Iterable[int] = (),
    ) -> tuple[StoredGoal | None, float | None]:
        """Lease the next due goal to *owner*; else (None, when the next retry is due, if any).

        Due goals among the rows *prefer* (those a flush of this process waits for) come first,
        then the others in due order. A goal due more than *horizon* seconds ahead counts as due
        (its time was written by a process whose wall clock was ahead of this one's). A goal
        whose lease had ended (its process died mid-attempt) comes ``taken_over``.
        """
        conn = self.conn
        preferred = sorted(prefer)
        with _write(conn):
            row = None
            if preferred:
                row = self._lease_next(owner, lease, now, horizon, up_to, preferred)
            if row is None:
                row = self._lease_next(owner, lease, now, horizon, up_to, None)
            if row is not None:
                return row, None
            (next_due,) = conn.execute(
                "SELECT min(due_at) FROM goals WHERE key_fp = ? AND target = ? AND provider = ?"
                " AND due_at > ?",
                (*self._mine, now),
            ).fetchone()
        return None, next_due

    def _lease_next(
        self,
        owner: str,
        lease: float,
        now: float,
        horizon: float,
        up_to: int | None,
        among: list[int] | None,
    ) -> StoredGoal | None:
        """Lease the first due, unleased goal of ours (of the rows *among*, if given).

        Within the caller's write transaction: the read and the lease are one step.
        """
        only = "" if among is None else " AND id IN (SELECT value FROM json_each(?))"
        row = self.conn.execute(
            "SELECT id, goal, created_at, retry, lease_owner IS NOT NULL FROM goals"  # noqa: S608
            " WHERE key_fp = ? AND target = ? AND provider = ?"
            " AND (due_at <= ? OR due_at > ?) AND lease_until <= ?"
            f" AND id <= ?{only} ORDER BY due_at, id LIMIT 1",
            (
                *self._mine,
                now,
                now + horizon,
                now,
                _NO_LIMIT if up_to is None else up_to,
                *(() if among is None else (json.dumps(among),)),
            ),
        ).fetchone()
        if row is None:
            return None
        row_id, text, created_at, retry, taken_over = row
        self.conn.execute(
            "UPDATE goals SET lease_owner = ?, lease_until = ? WHERE id = ?",
            (owner, now + lease, row_id),
        )
        return StoredGoal(int(row_id), str(text), created_at, str(retry), bool(taken_over))

    @_gated
    def peek(self, now: float, skip: set[int], limit: int) -> list[tuple[int, str]]:
        """Unleased rows of ours not in *skip*, read only (for a file that cannot be written)."""
        return [
            (int(row_id), str(text))
            for row_id, text in self.conn.execute(
                "SELECT id, goal FROM goals WHERE key_fp = ? AND target = ? AND provider = ?"
                " AND lease_until <= ? AND id NOT IN (SELECT value FROM json_each(?))"
                " ORDER BY id LIMIT ?",
                (*self._mine, now, json.dumps(sorted(skip)), limit),
            )
        ]

    @_gated
    def delete(self, ids: Iterable[int]) -> None:
        self.conn.execute(
            "DELETE FROM goals WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(ids)),),
        )

    @_gated
    def delivered(self, row_id: int) -> None:
        self.conn.execute("DELETE FROM goals WHERE id = ?", (row_id,))

    @_gated
    def reschedule(
        self,
        row_id: int,
        owner: str,
        *,
        due_at: float,
        state: RetryState,
        error: str,
    ) -> None:
        """Release *owner*'s lease on a goal that failed transiently, due again at *due_at*
        with its retry *state*."""
        self.conn.execute(
            "UPDATE goals SET due_at = ?, retry = ?, last_error = ?, lease_owner = NULL,"
            " lease_until = 0 WHERE id = ? AND lease_owner = ?",
            (due_at, state.to_json(), redact(error, _REASON_CHARS), row_id, owner),
        )

    @_gated
    def dead_letter(
        self, row_id: int, attempts: int, status: int | None, reason: str, now: float
    ) -> None:
        with _write(self.conn) as conn:
            conn.execute(
                "INSERT INTO dead_letters (target, goal, created_at, failed_at, attempts,"
                " status, reason, provider, key_fp)"
                " SELECT target, goal, created_at, ?, ?, ?, ?, provider, key_fp FROM goals"
                " WHERE id = ?",
                (now, attempts, status, redact(reason, _REASON_CHARS), row_id),
            )
            conn.execute("DELETE FROM goals WHERE id = ?", (row_id,))

    @_gated
    def due_now(self, now: float) -> int:
        """Our goals held back by an outage (not by a failure of their own) are due at *now*."""
        return int(
            self.conn.execute(
                "UPDATE goals SET due_at = ? WHERE key_fp = ? AND target = ? AND provider = ?"
                " AND due_at > ? AND json_extract(retry, '$.strike_mark') IS NULL"
                " AND lease_until <= ?",
                (now, *self._mine, now, now),
            ).rowcount
        )

    @_gated
    def expire(self, max_age: float, now: float) -> list[Expired]:
        """Move our goals older than *max_age* to the dead letters; returns what was moved.

        Goals leased to a live process are left to it; other identities' rows are left alone.
        """
        reason = f"older than max_age ({max_age:g} s) in the outbox; not sent"
        with _write(self.conn) as conn:
            rows = conn.execute(
                "DELETE FROM goals WHERE key_fp = ? AND target = ? AND provider = ?"
                " AND lease_until <= ? AND created_at < ?"
                " RETURNING target, goal, created_at,"
                " coalesce(json_extract(retry, '$.failures'), 0)",
                (*self._mine, now, now - max_age),
            ).fetchall()
            conn.executemany(
                "INSERT INTO dead_letters (target, goal, created_at, failed_at, attempts,"
                " status, reason, provider, key_fp) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                [
                    (target, text, created, now, attempts, reason, *self._mine[2:], self._mine[0])
                    for target, text, created, attempts in rows
                ],
            )
        return [Expired(text, reason) for _, text, _, _ in rows]

    @_gated
    def leases(self, now: float) -> list[str]:
        """Owners holding a live lease (on any row)."""
        rows = self.conn.execute(
            "SELECT DISTINCT lease_owner FROM goals"
            " WHERE lease_owner IS NOT NULL AND lease_until > ?",
            (now,),
        ).fetchall()
        return [owner for (owner,) in rows if owner]

    @_gated
    def release(self, owners: list[str]) -> None:
        with _write(self.conn) as conn:
            conn.executemany(
                "UPDATE goals SET lease_until = 0 WHERE lease_owner = ? AND lease_until > 0",
                [(owner,) for owner in owners],
            )

    @_gated
    def probe_write(self) -> None:
        """A committed write that changes nothing lasting: does the file take writes again?"""
        with _write(self.conn) as conn:
            cursor = conn.execute(
                "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp,"
                " lease_owner, lease_until) VALUES ('', '[]', 0, 0, '', '', 'probe', ?)",
                (_NO_LIMIT,),
            )
            conn.execute("DELETE FROM goals WHERE id = ?", (cursor.lastrowid,))


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
    """Waiting goals by the provider and URL they were tracked for (``"datafast https://…"``)."""
    by_identity: dict[Identity, int]
    """Waiting goals by identity. Only a tracker of that identity delivers them."""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    goal: Tracked
    created_at: float
    failed_at: float
    attempts: int
    status: int | None
    reason: str


class Outbox:
    """Administration of an outbox file: status, dead letters, retry, purge. No API key needed.

    Close it (or use it as a context manager): its connection is not left to the garbage
    collector (see :mod:`.gate`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = connect(self.path)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("the outbox administration is closed")
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            close(conn)

    def __del__(self) -> None:
        # Dropped unclosed: the connection is closed later, inside the gate, not here (a
        # finalizer runs on any thread, at any time).
        conn = getattr(self, "_conn", None)
        if conn is not None:
            gate.close_later(conn, self._pid)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @_gated
    def status(self) -> OutboxStatus:
        now = wall_time()
        waiting, leased, retrying, oldest = self._db.execute(
            "SELECT count(*), sum(lease_until > ?), sum(retry <> '{}' AND lease_until <= ?),"
            " min(created_at) FROM goals",
            (now, now),
        ).fetchone()
        (dead,) = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()
        identities = self._db.execute(
            "SELECT provider, target, key_fp, count(*) FROM goals GROUP BY 1, 2, 3 ORDER BY 4 DESC"
        ).fetchall()
        by_identity = {
            Identity(str(provider), str(target), str(fp)): int(count)
            for provider, target, fp, count in identities
        }
        by_destination: dict[str, int] = {}
        for identity, count in by_identity.items():
            where = f"{identity.provider} {identity.target}"
            by_destination[where] = by_destination.get(where, 0) + count
        return OutboxStatus(
            self.path,
            waiting,
            leased or 0,
            retrying or 0,
            None if oldest is None else max(0.0, now - oldest),
            dead,
            by_destination,
            by_identity,
        )

    @_gated
    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        rows = self._db.execute(
            "SELECT id, goal, created_at, failed_at, attempts, status, reason"
            " FROM dead_letters ORDER BY id LIMIT ?",
            (-1 if limit is None else limit,),
        ).fetchall()
        return [
            DeadLetter(
                row[0], decode_goal(row[1]), row[2], row[3], row[4], row[5], redact(row[6], None)
            )
            for row in rows
        ]

    @_gated
    def retry_dead_letters(self, ids: list[int] | None = None) -> int:
        """Move dead letters (all, or those *ids*) back to the outbox with fresh attempts."""
        now = wall_time()
        chosen = None if ids is None else json.dumps(ids)
        with _write(self._db) as conn:
            conn.execute(
                "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp)"
                " SELECT target, goal, ?, ?, provider, key_fp"
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

    @_gated
    def purge(self, *, dead_letters: bool = True, waiting: bool = False) -> int:
        """Delete dead letters and/or goals still waiting for delivery; returns how many."""
        removed = 0
        with _write(self._db) as conn:
            if dead_letters:
                removed += conn.execute("DELETE FROM dead_letters").rowcount
            if waiting:
                removed += conn.execute("DELETE FROM goals").rowcount
        return removed
