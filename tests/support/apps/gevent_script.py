"""A bare process under ``gevent.monkey.patch_all()``: goaltrack's threads are greenlets.

``python -m tests.support.apps.gevent_script sigterm N``: tracks N goals, prints ``tracked``, then
sleeps (in the hub) until a SIGTERM, which goaltrack's own handler turns into a flush.

``python -m tests.support.apps.gevent_script deadline``: tracks one goal with a 0.5 s request
timeout against an API whose answers trickle, flushes, and prints the flush's result, the
seconds it took and the tracker's stats as JSON.

``python -m tests.support.apps.gevent_script fork N``: tracks N goals (``parent-i``), forks while
they are being delivered; the child tracks N (``child-i``) and flushes; the parent waits for it,
then flushes. Prints both flushes' results as JSON.
"""

from gevent import monkey

monkey.patch_all()

import dataclasses  # noqa: E402 - after patching, as gevent requires
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import goaltrack  # noqa: E402

VISITOR = os.environ["SERVERS_VISITOR"]


def main(mode: str, count: int = 1) -> None:
    if mode == "sigterm":
        tracker = goaltrack.GoalTracker.from_env()
        for i in range(count):
            tracker.track("purchase", visitor_id=VISITOR, metadata={"id": str(i)})
        print("tracked", flush=True)
        time.sleep(60)  # SIGTERM ends this process long before
        return
    if mode == "fork":
        tracker = goaltrack.GoalTracker.from_env()
        for i in range(count):
            tracker.track("purchase", visitor_id=VISITOR, metadata={"id": f"parent-{i}"})
        child = os.fork()
        if child == 0:
            for i in range(count):
                tracker.track("purchase", visitor_id=VISITOR, metadata={"id": f"child-{i}"})
            os._exit(0 if tracker.flush(timeout=20) else 1)
        _, status = os.waitpid(child, 0)
        flushed = tracker.flush(timeout=20)
        print(json.dumps({"child_status": status, "parent_flushed": flushed}), flush=True)
        return
    tracker = goaltrack.GoalTracker.from_env(timeout=0.5)
    # The test starts the API's trickle window on "ready": a cold start (no bytecode cache yet,
    # a loaded machine) can take longer than the window itself.
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    tracker.track("purchase", visitor_id=VISITOR, metadata={"id": "0"})
    flushed = tracker.flush(timeout=20)
    took = time.monotonic() - started
    stats = dataclasses.asdict(tracker.stats)
    print(json.dumps({"flushed": flushed, "took": took, **stats}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
