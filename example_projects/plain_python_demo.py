"""goaltrack without a framework: the public API end to end against the bundled fake API.

Starts the bundled fake API (a real HTTP server on 127.0.0.1), plays a visitor of each provider
whose tracking script recorded a pageview, tracks their goals through goaltrack's public API from
a background worker, and prints what the API received.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx

import goaltrack


def start_fake_api() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "goaltrack.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        process.kill()
        raise SystemExit(f"the fake API did not start: {line!r}")
    return process, match.group(0)


def main() -> int:
    process, url = start_fake_api()
    try:
        with httpx.Client(base_url=url, timeout=10) as api:
            visitors = {
                provider: api.post("/_fake/pageviews", json={"provider": provider}).json()[
                    "visitor_id"
                ]
                for provider in ("datafast", "faurya")
            }
            keys = {"datafast": "df_demo_key", "faurya": "demo_key", "flowsery": "flow_demo_key"}
            trackers = {
                provider: goaltrack.GoalTracker(key, provider=provider, api_url=f"{url}/{provider}")
                for provider, key in keys.items()
            }
            started = time.perf_counter()
            trackers["datafast"].track(
                "Newsletter Signup", visitor_id=visitors["datafast"], metadata={"source": "demo"}
            )
            trackers["datafast"].track(
                "purchase", visitor_id=visitors["datafast"], metadata={"plan": "pro", "seats": 3}
            )
            trackers["faurya"].track("signup", visitor_id=visitors["faurya"])
            trackers["flowsery"].track(
                "signup", visitor_id="fs_visitor_1", session_id="fs_session_1"
            )
            track_ms = (time.perf_counter() - started) * 1000
            for tracker in trackers.values():
                if not tracker.flush(timeout=10):
                    print(f"not delivered in time: {tracker.stats}", file=sys.stderr)
                    return 1
            goals = api.get("/_fake/goals").json()
        print(
            f"4 goals validated and queued in {track_ms:.2f} ms (the first goal of each tracker "
            "starts its worker), then delivered in the background\n"
        )
        print(f"{'provider':<10} {'goal':<20} {'visitor':<38} {'metadata'}")
        for goal in goals:
            print(
                f"{goal['provider']:<10} {goal['name']:<20} {goal['visitor_id'] or '-':<38} "
                f"{goal['metadata']}"
            )
        print(
            "\nThe fake API stopped with this demo. To try one by hand: goaltrack fake-api "
            "--port 8765 (it prints how to get a visitor id and send a goal), then open "
            "http://127.0.0.1:8765/_fake/"
        )
        return 0 if len(goals) == 4 else 1
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
