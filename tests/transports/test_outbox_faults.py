"""The outbox under faults a deployment meets: fork(), shared files, held locks, full disks,
unusable files, clock steps, echoing APIs and workers that raise. Real HTTP to the fake API (or a
loopback server), real processes (fork, subprocesses), real SQLite files.

Each test names the fault and asserts what the user must see: no child hung, no lease held for a
dead process, no goal sent with another site's key, ``track`` never stuck behind a lock, no goal
lost when the disk is full, an unusable file named with its cause, no stall or early expiry on a
clock step, no key in any file or log record, and a worker that goes on.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from goaltrack import GoalTracker, InvalidConfiguration
from goaltrack.cli import main as cli_main
from goaltrack.redaction import key_fingerprint
from goaltrack.testing.fake_api.rules import key_hint
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.outbox import Outbox, store, transport
from tests.support.keys import DATAFAST_KEY
from tests.support.paths import REPO
from tests.support.ports import free_port
from tests.support.waiting import wait_until

KEY = DATAFAST_KEY
KEY_B = "df_secret_faults_key_B456"
ROOT = str(REPO)


def ids_delivered(fake_api: FakeAPIServer) -> Counter[str]:
    return Counter(g["metadata"]["id"] for g in fake_api.goals)


def reap(children: dict[int, float], bound: float, *, keep: int = 0) -> tuple[int, int]:
    """Wait for children until at most *keep* run; kill those older than *bound* seconds.

    Returns (hung, failed): children killed at the bound, children that exited non-zero.
    """
    hung = failed = 0
    while len(children) > keep:
        for pid, started in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                if code:
                    print(f"child {pid} exited with {code}")
                failed += code != 0
                del children[pid]
            elif time.monotonic() - started > bound:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                hung += 1
                del children[pid]
        time.sleep(0.005)
    return hung, failed


def waiting_on(tracker: GoalTracker) -> str:
    """What a child's unfinished flush waits for: its spool, its rows and who leases them."""
    outbox = tracker._transport  # type: ignore[attr-defined]
    mine = sorted(outbox._own_rows)
    with contextlib.closing(sqlite3.connect(outbox.path)) as conn:
        rows = conn.execute(
            "SELECT id, lease_owner, lease_until - ?, due_at - ?, retry FROM goals"
            " WHERE id IN (SELECT value FROM json_each(?))",
            (time.time(), time.time(), json.dumps(mine)),
        ).fetchall()
        (backlog,) = conn.execute("SELECT count(*) FROM goals").fetchone()
        (ahead,) = conn.execute(
            "SELECT count(*) FROM goals WHERE id < ?", (mine[0] if mine else 0,)
        ).fetchone()
    return (
        f"pid {os.getpid()} owner {outbox._owner}: spool {len(outbox._spool)}"
        f" (+{outbox._spool_busy} being written), own rows {mine} still there {rows},"
        f" {backlog} rows in the file ({ahead} older), breaker {outbox._breaker.state.name},"
        f" workers alive {sum(t.is_alive() for t in outbox._threads)}\n"
    )


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# -- fork -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_200_forks_while_the_outbox_threads_are_busy_leave_no_child_hung(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], tmp_path: Path
) -> None:
    # What earlier tests left to the garbage collector goes now, not on some thread mid-fork.
    # (The outbox leaves it no connection: tests/transports/test_outbox_fork_gate.py.)
    gc.collect()
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=3)
    tracker = make_tracker()
    stop = threading.Event()

    def keep_busy() -> None:  # the parent's request path and workers are in SQLite throughout
        i = 0
        while not stop.is_set():
            tracker.track("parent", visitor_id=visitor, metadata={"id": f"p{i}"})
            i += 1
            time.sleep(0.003)

    busy = threading.Thread(target=keep_busy)
    busy.start()
    children: dict[int, float] = {}
    hung = failed = 0
    try:
        for n in range(200):
            h, f = reap(children, bound=20.0, keep=8)
            hung, failed = hung + h, failed + f
            pid = os.fork()
            if pid == 0:  # the child: track, flush, leave without the parent's cleanup
                code = 1
                # Where a child that outlives the bound is stuck, for the failure message.
                faulthandler.dump_traceback_later(18, file=open(stacks / str(os.getpid()), "w"))  # noqa: SIM115
                try:
                    if not tracker.track("child", visitor_id=visitor, metadata={"id": f"c{n}"}):
                        code = 3
                    elif not tracker.flush(timeout=15):
                        code = 4
                        dump = f"exit 4, flush(timeout=15) False: {waiting_on(tracker)}"
                        (stacks / f"{os.getpid()}.waiting").write_text(dump)
                    else:
                        code = 0
                finally:
                    os._exit(code)
            children[pid] = time.monotonic()
        h, f = reap(children, bound=20.0)
        hung, failed = hung + h, failed + f
    finally:
        stop.set()
        busy.join()
    stuck = [path.read_text() for path in sorted(stacks.iterdir()) if path.stat().st_size]
    assert (hung, failed) == (0, 0), stuck[:2]
    assert tracker.flush(timeout=30)
    delivered = ids_delivered(fake_api)
    assert {f"c{n}" for n in range(200)} <= set(delivered)


def test_a_flush_waits_for_its_own_goals_not_for_older_ones_another_process_holds(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    who = tracker._transport.identity  # type: ignore[attr-defined]
    # An older backlog of the same destination, leased for minutes by a live process (a
    # sibling worker busy with it, or a parent whose backlog outgrows its delivery).
    held_by = f"{os.uname().nodename}:{os.getpid()}::sibling"
    goal = json.dumps(["datafast", "backlog", visitor, None, None, None, None])
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        conn.executemany(
            "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp,"
            " lease_owner, lease_until) VALUES (?, ?, ?, ?, 'datafast', ?, ?, ?)",
            [
                (who.target, goal, time.time(), time.time(), who.key_fp, held_by, time.time() + 600)
                for _ in range(50)
            ],
        )
        conn.commit()
    assert tracker.track("mine", visitor_id=visitor, metadata={"id": "mine"})
    started = time.monotonic()
    assert tracker.flush(timeout=10)
    took = time.monotonic() - started
    assert took < 5.0, f"flush took {took:.1f} s"
    assert set(ids_delivered(fake_api)) == {"mine"}  # the held backlog stayed with its holder


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_leases_of_children_gone_by_os_exit_are_taken_back_within_seconds(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    sibling = make_tracker()  # open, idle, in the parent: it forks with the children
    fake_api.set_faults(latency_ms=1500)  # each child's requests are in flight when it leaves
    held_r, held_w = os.pipe()
    go_r, go_w = os.pipe()
    children: dict[int, float] = {}
    for n in range(6):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = GoalTracker(
                    KEY,
                    api_url=fake_api.api_url("datafast"),
                    outbox=outbox_path,
                    flush_at_exit=False,
                    max_in_flight=2,
                )
                for i in range(3):
                    child.track("child", visitor_id=visitor, metadata={"id": f"c{n}-{i}"})
                mine = f"%:{os.getpid()}:%"
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # both workers hold a lease
                    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
                        (held,) = conn.execute(
                            "SELECT count(*) FROM goals WHERE lease_owner LIKE ?"
                            " AND lease_until > 0",
                            (mine,),
                        ).fetchone()
                    if held == 2:
                        code = 0
                        break
                    time.sleep(0.01)
                os.write(held_w, b"h")
                os.read(go_r, 1)  # all children leave together, requests in flight
            finally:
                os._exit(code)
        children[pid] = time.monotonic()
    for _ in range(6):
        assert os.read(held_r, 1) == b"h"
    os.write(go_w, b"g" * 6)
    assert reap(children, bound=30.0) == (0, 0)
    for fd in (held_r, held_w, go_r, go_w):
        os.close(fd)
    # What the dead children really held:
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        (left_leased,) = conn.execute(
            "SELECT count(*) FROM goals WHERE lease_owner IS NOT NULL AND lease_until > ?",
            (time.time(),),
        ).fetchone()
    assert left_leased == 12
    fake_api.set_faults(latency_ms=0)
    sibling.track("sibling", visitor_id=visitor, metadata={"id": "s"})
    started = time.monotonic()
    assert sibling.flush(timeout=15)  # its own goal: not behind the dead children's leases
    expected = {f"c{n}-{i}" for n in range(6) for i in range(3)} | {"s"}
    wait_until(lambda: expected <= set(ids_delivered(fake_api)), timeout=15)
    took = time.monotonic() - started
    assert took < 5.0, f"the sibling waited {took:.1f} s for dead processes' leases"
    delivered = ids_delivered(fake_api)
    really_twice = sum(count - 1 for count in delivered.values())
    # Every goal sent twice is flagged, and no goal a dead child did not hold is.
    assert really_twice <= sibling.stats.possible_duplicates <= left_leased
    print(
        f"\ndead children: their goals sent in {took:.2f} s, {left_leased} leases left, "
        f"{sibling.stats.possible_duplicates} flagged, {really_twice} sent twice"
    )


_PRELOAD_APP = """
import os
from goaltrack import GoalTracker

tracker = GoalTracker(os.environ["KEY"], api_url=os.environ["URL"], outbox=os.environ["OUTBOX"])


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def post_worker_init(worker):  # the worker's first use of the outbox, as it boots
    tracker.track("boot", visitor_id=os.environ["VISITOR"], metadata={"id": str(os.getpid())})
    open(os.path.join(os.environ["MARKS"], str(os.getpid())), "w").close()
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_gunicorn_preload_with_a_20k_backlog_boots_every_worker(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], tmp_path: Path
) -> None:
    outbox = str(tmp_path / "goals.sqlite3")
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker(outbox=outbox)
    who = tracker._transport.identity  # type: ignore[attr-defined]
    tracker.close(timeout=0)
    goal = json.dumps(["datafast", "backlog", visitor, None, None, None, None])
    with contextlib.closing(sqlite3.connect(outbox)) as conn:
        conn.executemany(
            "INSERT INTO goals (target, goal, created_at, due_at, provider, key_fp)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(who.target, goal, time.time(), time.time(), who.provider, who.key_fp)] * 20_000,
        )
        conn.commit()
    fake_api.set_faults(latency_ms=20)  # the master's outbox threads are busy as it forks
    (tmp_path / "preload_app.py").write_text(_PRELOAD_APP)
    marks = tmp_path / "marks"
    marks.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}:{tmp_path}",
        "KEY": KEY,
        "URL": fake_api.api_url("datafast"),
        "OUTBOX": outbox,
        "VISITOR": visitor,
        "MARKS": str(marks),
    }
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "4", "--timeout"]
    command += ["10", "--bind", f"127.0.0.1:{port}", "-c", str(tmp_path / "preload_app.py")]
    command += ["preload_app:app"]
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        wait_until(lambda: len(list(marks.iterdir())) >= 4, timeout=30)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert sorted(children) == sorted(p.name for p in marks.iterdir())
        assert "WORKER TIMEOUT" not in log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    fake_api.set_faults(latency_ms=0)


# -- two sites, one file ----------------------------------------------------------------------


def test_two_sites_sharing_one_outbox_never_send_with_each_others_key(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        site_a, site_b = make_tracker(KEY), make_tracker(KEY_B)
        for i in range(100):
            site_a.track("a", visitor_id=visitor, metadata={"id": f"a{i}"})
            site_b.track("b", visitor_id=visitor, metadata={"id": f"b{i}"})
        assert cli_main(["outbox", "status", "--path", outbox_path]) == 0
    finally:
        fake_api.start()
    out = capsys.readouterr().out
    assert f"100 for datafast {fake_api.api_url('datafast')}/api/v1/goals (key " in out
    assert key_fingerprint(KEY) in out
    assert key_fingerprint(KEY_B) in out
    assert KEY not in out
    assert KEY_B not in out
    assert site_a.flush(timeout=30)
    assert site_b.flush(timeout=30)
    hint = {"a": key_hint(KEY), "b": key_hint(KEY_B)}
    assert hint["a"] != hint["b"]
    wrong = [g for g in fake_api.goals if g["key_hint"] != hint[g["metadata"]["id"][0]]]
    assert len(fake_api.goals) == 200
    assert wrong == []
    assert set(ids_delivered(fake_api).values()) == {1}


_SCHEMA_1 = """
CREATE TABLE goals (id INTEGER PRIMARY KEY, target TEXT NOT NULL, goal TEXT NOT NULL,
    created_at REAL NOT NULL, due_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until REAL NOT NULL DEFAULT 0,
    may_have_arrived INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    strikes INTEGER NOT NULL DEFAULT 0, strike_mark TEXT);
CREATE INDEX goals_due ON goals (due_at);
CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, target TEXT NOT NULL, goal TEXT NOT NULL,
    created_at REAL NOT NULL, failed_at REAL NOT NULL, attempts INTEGER NOT NULL,
    status INTEGER, reason TEXT NOT NULL);
"""


# Updated with the single retry state (schema 3): a file of a pre-release layout is no longer
# migrated; the tests below replace the one that checked the migration and the adoption of its
# rows.


def _schema_1_file(path: str, goals: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(_SCHEMA_1)
        for i in range(goals):
            goal = json.dumps(["datafast", "old", "v", None, {"id": f"old{i}"}, None, None])
            conn.execute(
                "INSERT INTO goals (target, goal, created_at, due_at) VALUES ('t', ?, 0, 0)",
                (goal,),
            )
        conn.commit()


def test_an_empty_file_of_a_pre_release_schema_is_made_afresh(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    _schema_1_file(outbox_path, goals=0)
    tracker = make_tracker()
    visitor = fake_api.add_pageview("datafast")
    tracker.track("new", visitor_id=visitor)
    assert tracker.flush(timeout=10)
    assert [g["name"] for g in fake_api.goals] == ["new"]
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(goals)")}
    assert version == store.SCHEMA_VERSION
    assert "retry" in columns
    assert not {"attempts", "strikes", "strike_mark", "may_have_arrived"} & columns


def test_a_file_of_a_pre_release_schema_holding_goals_is_refused_and_left_untouched(
    outbox_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _schema_1_file(outbox_path, goals=3)
    with pytest.raises(InvalidConfiguration) as raised:
        GoalTracker(KEY, outbox=outbox_path, flush_at_exit=False)
    message = str(raised.value)
    assert outbox_path in message
    assert "written by a pre-release goaltrack (schema version 0" in message
    assert "holds 3 row(s)" in message
    assert cli_main(["outbox", "status", "--path", outbox_path]) == 2
    assert "pre-release goaltrack" in capsys.readouterr().err
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (left,) = conn.execute("SELECT count(*) FROM goals").fetchone()
    assert (version, left) == (0, 3)  # nothing was changed or lost


# -- a held write lock, and 200 threads -------------------------------------------------------


@pytest.mark.slow
def test_a_write_lock_held_by_another_process_costs_track_milliseconds_not_the_goal(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    tracker.track("warm", visitor_id=visitor, metadata={"id": "warm"})
    assert tracker.flush(timeout=10)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(8)\n"
            "conn.execute('COMMIT')\n",
            outbox_path,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        took = []
        for i in range(20):
            started = time.perf_counter()
            assert tracker.track("held", visitor_id=visitor, metadata={"id": str(i)})
            took.append(time.perf_counter() - started)
        assert holder.poll() is None  # the lock was held all along
        # Waiting for the lock would cost seconds (the holder keeps it 8 s); the figure is
        # printed, and the bound holds on a loaded machine (349 ms was seen with 2 cores busy).
        assert max(took) < 1.0, f"track() took up to {max(took) * 1000:.0f} ms"
        assert holder.wait(timeout=30) == 0
    finally:
        holder.kill()
        holder.wait()
    assert tracker.flush(timeout=20)
    assert ids_delivered(fake_api) == Counter({"warm": 1, **{str(i): 1 for i in range(20)}})
    assert tracker.stats.dropped == 0
    print(f"\nheld write lock: track() max {max(took) * 1000:.1f} ms")


@pytest.mark.slow
def test_track_latency_with_200_threads_stays_low(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    start = threading.Barrier(200)
    took: list[float] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        start.wait()
        mine = []
        for i in range(10):
            began = time.perf_counter()
            tracker.track("load", visitor_id=visitor, metadata={"id": f"{index}-{i}"})
            mine.append(time.perf_counter() - began)
        with lock:
            took.extend(mine)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took.sort()
    p99, worst = took[int(len(took) * 0.99)], took[-1]
    print(f"\n200 threads: track() p99 {p99 * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert p99 < 0.5  # generous: the figure is reported, the bound holds under load
    assert tracker.flush(timeout=60)
    delivered = ids_delivered(fake_api)
    assert len(delivered) == 2000
    assert tracker.stats.dropped == 0


# -- a full disk ------------------------------------------------------------------------------


def test_a_file_size_limit_degrades_to_memory_with_one_error_and_loses_nothing(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    visitor = fake_api.add_pageview("datafast")
    result = run_python(
        """
        import json, logging, resource, sys, time
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        from goaltrack import GoalTracker
        key, url, path, visitor = sys.argv[1:5]
        tracker = GoalTracker(key, api_url=url, outbox=path, flush_at_exit=False)
        accepted = sum(
            tracker.track("disk", visitor_id=visitor, metadata={"id": str(i), "pad": "x" * 150})
            for i in range(500)
        )
        flushed = tracker.flush(timeout=60)
        stats = tracker.stats
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)  # space again
        deadline = time.monotonic() + 30
        while tracker._transport._degraded and time.monotonic() < deadline:
            time.sleep(0.05)
        fallback = tracker._transport._fallback
        to_memory = fallback.stats.queued if fallback is not None else 0
        stored = sum(
            tracker.track("disk", visitor_id=visitor, metadata={"id": str(i)})
            for i in range(500, 510)
        )
        in_file = not tracker._transport._degraded and to_memory == (
            fallback.stats.queued if fallback is not None else 0
        )
        flushed = tracker.flush(timeout=30) and flushed
        tracker.close(5)
        print(json.dumps({"accepted": accepted + stored, "flushed": flushed,
                          "dropped": stats.dropped, "in_file": in_file}))
        """,
        KEY,
        fake_api.api_url("datafast"),
        str(tmp_path / "goals.sqlite3"),
        visitor,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {"accepted": 510, "flushed": True, "dropped": 0, "in_file": True}
    assert report == expected, result.stderr[-3000:]
    assert set(ids_delivered(fake_api)) == {str(i) for i in range(510)}
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert 1 <= len(errors) <= 2, result.stderr[-3000:]
    assert "cannot be written" in errors[0]
    infos = [line for line in result.stderr.splitlines() if line.startswith("INFO")]
    assert len([line for line in infos if "can be written again" in line]) == len(errors)
    assert "Traceback" not in result.stderr


# -- unusable files ---------------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an outbox\n" * 200)


def _truncated(path: Path) -> None:
    with Outbox(path) as admin:
        admin.purge()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        goal = json.dumps(["datafast", "x", "v", None, {"pad": "y" * 200}, None, None])
        conn.executemany(
            "INSERT INTO goals (provider, target, key_fp, goal, created_at, due_at)"
            " VALUES ('datafast', 't', 'k', ?, 0, 0)",
            [(goal,)] * 3000,
        )
        conn.commit()
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)


def _newer_version(path: Path) -> None:
    with Outbox(path):
        pass
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
        conn.commit()


def _newer_column(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            store._SCHEMA.replace("last_error TEXT\n", "last_error TEXT,\n tenant TEXT NOT NULL\n")
        )
        conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION}")
        conn.commit()


@pytest.mark.parametrize(
    ("make_file", "cause"),
    [
        (_garbage, "not a SQLite database"),
        (_truncated, "truncated"),
        (_newer_version, "schema version 99, made by a newer goaltrack"),
        (_newer_column, "required column 'tenant'"),
    ],
)
def test_an_unusable_outbox_is_refused_at_start_naming_the_path_and_the_cause(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_file: Callable[[Path], None],
    cause: str,
) -> None:
    path = tmp_path / "goals.sqlite3"
    make_file(path)
    with pytest.raises(InvalidConfiguration) as raised:
        GoalTracker(KEY, outbox=str(path), flush_at_exit=False)
    assert str(path) in str(raised.value)
    assert cause in str(raised.value)
    assert cli_main(["outbox", "status", "--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert cause in err


def test_an_outbox_in_a_read_only_directory_is_refused_naming_it() -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to drop to another user (root writes anywhere)")
    directory = tempfile.mkdtemp()
    try:
        os.chmod(directory, 0o755)  # noqa: S103 - the other user may read it, not write in it
        existing = os.path.join(directory, "existing.sqlite3")
        with Outbox(existing):
            pass
        os.chmod(existing, 0o644)
        result = run_python(
            """
            import os, sqlite3, sys
            from goaltrack import GoalTracker, InvalidConfiguration
            import goaltrack.transports.outbox  # imported while the files are readable
            os.setgid(65534)
            os.setuid(65534)
            for path in sys.argv[1:]:
                try:
                    GoalTracker("df_secret_faults_key_A123", outbox=path, flush_at_exit=False)
                except InvalidConfiguration as exc:
                    print(exc)
                else:
                    print("accepted", path)
            """,
            os.path.join(directory, "new.sqlite3"),
            existing,
        )
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    assert result.returncode == 0, result.stderr
    new, old = result.stdout.strip().splitlines()
    assert f"the outbox {directory}/new.sqlite3 cannot be used" in new
    assert "not writable" in new
    assert f"the outbox {existing} cannot be used" in old
    assert "cannot be written" in old or "not writable" in old


# -- clock steps ------------------------------------------------------------------------------


def step_wall_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(store, "wall_time", lambda: time.time() + seconds)


def test_a_wall_clock_stepped_back_an_hour_during_an_outage_stalls_nothing(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        before = make_tracker()
        for i in range(30):
            before.track("clock", visitor_id=visitor, metadata={"id": f"b{i}"})
        wait_until(lambda: before.stats.retried >= 3)  # goals rescheduled on the old clock
        step_wall_clock(monkeypatch, -3600)
        after = make_tracker()  # started after the step: the file's times are an hour ahead
        for i in range(30):
            after.track("clock", visitor_id=visitor, metadata={"id": f"a{i}"})
        before.close(timeout=0)  # only the tracker on the stepped clock is left to deliver
    finally:
        fake_api.start()
    started = time.monotonic()
    wait_until(lambda: len(fake_api.goals) >= 60, timeout=14)
    assert time.monotonic() - started < 14
    assert after.flush(timeout=10)
    assert set(ids_delivered(fake_api)) == {f"b{i}" for i in range(30)} | {
        f"a{i}" for i in range(30)
    }
    assert after.stats.failed == 0
    with Outbox(outbox_path) as admin:
        assert admin.status().dead_letters == 0


@pytest.mark.slow
def test_a_wall_clock_stepped_forward_an_hour_expires_nothing_early(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "AGE_CHECK_INTERVAL", 0.05)  # the age check runs at once
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        tracker = make_tracker(outbox_max_age=1800)
        for i in range(60):
            tracker.track("clock", visitor_id=visitor, metadata={"id": str(i)})
        step_wall_clock(monkeypatch, +3600)
        wait_until(lambda: tracker.stats.retried >= 6)  # the workers went round after the step
        assert tracker.stats.failed == 0
    finally:
        fake_api.start()
    assert tracker.flush(timeout=20)
    assert set(ids_delivered(fake_api)) == {str(i) for i in range(60)}
    assert tracker.stats.failed == 0
    with Outbox(outbox_path) as admin:
        assert admin.status().dead_letters == 0


# -- an API that echoes the request; file modes -----------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    """Answers every goal with the request's headers in the body: 500 first, then 400."""

    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 500 if type(self).calls == 1 else 400
        body = json.dumps(
            {"error": f"echo: Authorization={self.headers['Authorization']}", **self.headers}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_an_api_echoing_the_key_leaves_it_in_no_file_and_no_log_and_files_are_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path / "goals.sqlite3"
    try:
        with caplog.at_level(logging.DEBUG, logger="goaltrack"):
            tracker = GoalTracker(
                KEY,
                api_url=f"http://127.0.0.1:{server.server_address[1]}",
                outbox=str(path),
                flush_at_exit=False,
                backoff_base=0.05,
                backoff_max=0.1,
            )
            tracker.track("echo", visitor_id="b3ab2331-989f-4cfa-91c6-2461c9e3c6bd")
            assert tracker.flush(timeout=10)
            # While the tracker is open: the file, its -wal and its -shm (gone once it closes).
            open_files = sorted(tmp_path.iterdir())
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in open_files}
            held = [f.name for f in open_files if KEY.encode() in f.read_bytes()]
            tracker.close(timeout=2)
    finally:
        server.shutdown()
        server.server_close()
    assert _Echo.calls == 2  # a retry after the 500, a dead letter after the 400
    assert set(modes) >= {"goals.sqlite3", "goals.sqlite3-wal", "goals.sqlite3-shm"}
    assert set(modes.values()) == {0o600}, modes
    assert held == []
    for file in sorted(tmp_path.iterdir()):
        assert KEY.encode() not in file.read_bytes(), file.name
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
    with Outbox(path) as admin:
        [letter] = admin.dead_letters()
    assert "<redacted>" in letter.reason
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in str(record.exc_text or "")
    assert cli_main(["outbox", "dead-letters", "--path", str(path)]) == 0
    assert KEY not in capsys.readouterr().out


# -- a worker that raises ---------------------------------------------------------------------


def test_a_worker_that_raises_is_logged_once_and_goes_on(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    raised = []

    def on_delivery(goal: Any, result: Any) -> None:
        if not raised:
            raised.append(goal.name)
            raise SystemExit(3)  # a hook that ends "the program": only the thread would end

    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        tracker = make_tracker(max_in_flight=1, on_delivery=on_delivery)
        for i in range(10):
            tracker.track("after", visitor_id=visitor, metadata={"id": str(i)})
        assert tracker.flush(timeout=10)
    assert raised == ["after"]
    assert set(ids_delivered(fake_api)) == {str(i) for i in range(10)}
    assert any(t.is_alive() for t in tracker._transport._threads)  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if "outbox worker" in r.getMessage()]
    assert len(failed) == 1
    tracker.track("later", visitor_id=visitor, metadata={"id": "later"})
    assert tracker.flush(timeout=10)
    assert "later" in ids_delivered(fake_api)
