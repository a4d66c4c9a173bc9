"""goaltrack.process: what fork, interpreter exit and SIGTERM do to goaltrack, and its threads.

- a forked child resets every registered transport and runs the fork hooks registered with
  ``at_fork`` (the HTTP client's watchdog among them); the parent resets nothing;
- at interpreter exit the transports registered to be closed are closed once, with ``exiting()``
  true, and not those closed already or never registered for it;
- SIGTERM with Python's default action: goaltrack's handler flushes, then the process still ends
  by SIGTERM; an application's own handler is left in place and runs, and the exit flush follows
  through atexit; a registration from another thread installs nothing;
- delivery threads are marked, ``start_thread`` starts them, and too many live trackers are
  warned about once.

The scripts run in their own interpreter (a fork or a signal must not touch the test process);
each waits on its output with a deadline that holds at 4x the machine's load.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import types

import pytest

from goaltrack import GoalTracker, process
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import KEYS
from tests.support.paths import REPO

DEADLINE = 60.0  # seconds for a script that needs about one


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


# A transport as goaltrack.process sees one: it says what happens to it.
TRANSPORT = """
import os, sys, signal, threading
from goaltrack import process

class Transport:
    shutdown_timeout = 1.0

    def __init__(self, name):
        self.name = name

    def _after_fork_in_child(self):
        print(f"{self.name} reset in {'child' if os.getpid() != PARENT else 'parent'}", flush=True)

    def _close_at_exit(self):
        print(f"{self.name} closed at exit (exiting={process.exiting()})", flush=True)

PARENT = os.getpid()
"""


@pytest.mark.slow
def test_a_forked_child_starts_fresh_and_the_parent_keeps_its_state() -> None:
    result = run_script(
        TRANSPORT
        + """
from goaltrack import http_client

order = []
process.at_fork(before=lambda: order.append("before"),
                after_in_parent=lambda: order.append("after in parent"),
                after_in_child=lambda: order.append("after in child"))
transport = Transport("memory")
process.register_for_process_events(transport, close_at_exit=False)

def worker():
    process.mark_delivery_thread()
    http_client._watchdog()  # the parent's watchdog exists now
    print(f"in delivery thread: {process.in_delivery_thread()}", flush=True)

thread = threading.Thread(target=worker)
process.start_thread(thread)
thread.join(10)
print(f"parent watchdog: {http_client._the_watchdog is not None}", flush=True)
pid = os.fork()
if pid == 0:
    print(f"child hooks: {order}", flush=True)
    print(f"child watchdog: {http_client._the_watchdog is not None}", flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(f"parent hooks: {order}", flush=True)
"""
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["in delivery thread: True", "parent watchdog: True"]
    assert "memory reset in child" in lines
    assert "memory reset in parent" not in lines
    assert "child hooks: ['before', 'after in child']" in lines
    assert "child watchdog: False" in lines  # its thread does not exist in the child
    assert lines[-1] == "parent hooks: ['before', 'after in parent']"


@pytest.mark.slow
def test_at_exit_registered_transports_are_closed_once_and_only_those() -> None:
    result = run_script(
        TRANSPORT
        + """
closing = Transport("closing")
process.register_for_process_events(closing, close_at_exit=True)
closed_already = Transport("closed already")
process.register_for_process_events(closed_already, close_at_exit=True)
process.forget_at_exit(closed_already)
never = Transport("fork only")
process.register_for_process_events(never, close_at_exit=False)
print(f"exiting before exit: {process.exiting()}", flush=True)
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "exiting before exit: False",
        "closing closed at exit (exiting=True)",
    ]


SIGTERM_SCRIPT = (
    TRANSPORT
    + """
import time
if os.environ.get("APP_HANDLER"):
    def app_handler(signum, frame):
        print("app handler", flush=True)
        sys.exit(0)  # exits through atexit

    signal.signal(signal.SIGTERM, app_handler)
before = signal.getsignal(signal.SIGTERM)
elsewhere = Transport("registered from a thread")
from_thread = threading.Thread(
    target=process.register_for_process_events, args=(elsewhere,), kwargs={"close_at_exit": True}
)
from_thread.start()
from_thread.join(10)
changed = signal.getsignal(signal.SIGTERM) is not before
print(f"handler changed from a thread: {changed}", flush=True)
transport = Transport("memory")
process.register_for_process_events(transport, close_at_exit=True)
print(f"handler changed: {signal.getsignal(signal.SIGTERM) is not before}", flush=True)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""
)


def stop_with_sigterm(app_handler: bool) -> tuple[int, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if app_handler:
        env["APP_HANDLER"] = "1"
    script = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGTERM_SCRIPT)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "ready":  # each line comes within DEADLINE, or EOF
            line = script.stdout.readline()
            assert line, script.stderr.read() if script.stderr else ""
            lines.append(line.strip())
        script.send_signal(signal.SIGTERM)
        out, _ = script.communicate(timeout=DEADLINE)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    return script.returncode, lines + out.splitlines()


@pytest.mark.slow
def test_sigterm_with_the_default_action_flushes_then_still_ends_by_sigterm() -> None:
    returncode, lines = stop_with_sigterm(app_handler=False)
    assert returncode == -signal.SIGTERM
    assert "handler changed from a thread: False" in lines  # only the main thread may
    assert "handler changed: True" in lines
    closed = [line for line in lines if "closed at exit" in line]
    assert sorted(closed) == [
        "memory closed at exit (exiting=True)",
        "registered from a thread closed at exit (exiting=True)",
    ]


@pytest.mark.slow
def test_sigterm_with_the_apps_own_handler_leaves_it_in_place_and_flushes_at_exit() -> None:
    returncode, lines = stop_with_sigterm(app_handler=True)
    assert returncode == 0  # what the app's handler decided
    assert "handler changed: False" in lines
    assert lines.index("app handler") < lines.index("memory closed at exit (exiting=True)")
    assert len([line for line in lines if line.startswith("memory closed")]) == 1


# -- in this process: threads and the live-tracker warning ---------------------------------------


def test_only_marked_threads_are_delivery_threads() -> None:
    seen: list[bool] = []

    def worker() -> None:
        seen.append(process.in_delivery_thread())
        process.mark_delivery_thread()
        seen.append(process.in_delivery_thread())

    thread = threading.Thread(target=worker)
    assert process.start_thread(thread) is True
    thread.join(10)
    assert seen == [False, True]
    assert process.in_delivery_thread() is False


def test_too_many_live_trackers_are_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_warned_many", False)
    monkeypatch.setattr(process, "_live", type(process._live)())

    class Transport:
        pass

    transports = [Transport() for _ in range(process.MANY_TRACKERS + 3)]
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        for transport in transports[: process.MANY_TRACKERS]:
            process.count_live(transport, 4)
        assert not caplog.records  # as many as allowed: no warning
        process.forget_live(transports[0])
        process.count_live(transports[process.MANY_TRACKERS], 4)
        assert not caplog.records  # a closed one does not count
        for transport in transports[process.MANY_TRACKERS + 1 :]:
            process.count_live(transport, 4)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert f"{process.MANY_TRACKERS + 1} trackers are alive" in warnings[0]
    assert "up to 4 delivery threads" in warnings[0]


def test_without_gevent_patching_threads_are_threads() -> None:
    monkey = sys.modules.get("gevent.monkey")
    patched = monkey is not None and monkey.is_module_patched("threading")
    assert process.threads_are_greenlets() is bool(patched)


@pytest.mark.parametrize("hooks", [True, False])
def test_in_uwsgis_master_no_thread_starts_and_flush_delivers_in_the_caller(
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    hooks: bool,
) -> None:
    # uWSGI forks from C without the GIL: a thread of the master could hang the worker.
    master = types.SimpleNamespace(worker_id=lambda: 0, opt={"py-call-osafterfork": hooks})
    monkeypatch.setitem(sys.modules, "uwsgi", master)
    monkeypatch.setattr(process, "_said_uwsgi_master", False)
    visitor = fake_api.add_pageview("datafast")
    ours = {t for t in threading.enumerate() if t.name.startswith("goaltrack")}
    tracker = GoalTracker(
        KEYS["datafast"], api_url=fake_api.api_url("datafast"), flush_at_exit=False
    )
    try:
        with caplog.at_level(logging.INFO, logger="goaltrack"):
            for n in range(3):
                assert tracker.track("warmup", visitor_id=visitor, metadata={"n": str(n)})
            assert process.start_thread(threading.Thread(target=lambda: None)) is False
            started = {t for t in threading.enumerate() if t.name.startswith("goaltrack")} - ours
            assert started == set()
            assert fake_api.goals == []  # nothing delivers until the flush
            assert tracker.flush(timeout=10)
        assert sorted(g["metadata"]["n"] for g in fake_api.goals) == ["0", "1", "2"]
        said = [(r.levelno, r.getMessage()) for r in caplog.records if "uWSGI" in r.getMessage()]
        assert len(said) == 1
        assert said[0][0] == (logging.INFO if hooks else logging.WARNING)
        # A worker (or no uWSGI at all): threads again.
        master.worker_id = lambda: 1
        assert tracker.track("in-a-worker", visitor_id=visitor)
        fake_api.wait_for_goals(4, timeout=10)
    finally:
        tracker.close(timeout=5)


def test_a_transport_forked_without_pythons_hooks_starts_afresh_in_the_child(
    fake_api: FakeAPIServer,
) -> None:
    # The child of a C fork (uWSGI without --py-call-osafterfork) never ran the at-fork hooks:
    # the tracker notices the new process id and leaves the parent's queue and pool behind.
    script = f"""
import os
from goaltrack import GoalTracker
tracker = GoalTracker({KEYS["datafast"]!r}, api_url={fake_api.api_url("datafast")!r},
                      flush_at_exit=False, delivery_process=False)
transport = tracker._transport
transport._pid = -1  # as if made in another process
transport._queue.append("the parent's")
assert tracker.track("child", visitor_id={fake_api.add_pageview("datafast")!r})
assert "the parent's" not in transport._queue
assert tracker.flush(10)
print("delivered")
"""
    result = run_script(script)
    assert result.stdout.strip() == "delivered", result.stderr
    assert [g["name"] for g in fake_api.goals] == ["child"]
