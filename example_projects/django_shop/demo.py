"""goaltrack's Django demo: the example shop under a real server, a scripted visitor, the goals.

Starts the fake provider API, migrates a fresh sqlite database, serves the shop with gunicorn
(or uvicorn: ``--server uvicorn``) on a free loopback port, then plays one visitor: a pageview
(what the provider's script would record), a signup (which logs the visitor in) and a purchase.
Prints the goals the fake API received and exits 0, or explains what went wrong and exits 1.

    python example_projects/django_shop/demo.py [--server gunicorn|uvicorn]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15"
)
SHOP_API_KEY = "df_example_shop_key"
EXPECTED_GOALS = ("signup", "login", "purchase")
START_TIMEOUT = 30.0


class DemoError(Exception):
    """Something the demo could not do, explained for the person running it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shop_environment(api_url: str, db_path: Path, provider: str = "datafast") -> dict[str, str]:
    """Environment for the shop's processes: its database and the API it sends goals to."""
    python_path = os.pathsep.join(
        p for p in (str(HERE), str(REPOSITORY), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "GOALTRACK_API_KEY": SHOP_API_KEY,
        "GOALTRACK_API_URL": api_url,
        "GOALTRACK_PROVIDER": provider,
        "SHOP_DB_PATH": str(db_path),
        "SHOP_DEBUG": "0",
        "PYTHONPATH": python_path,
    }


def server_command(server: str, port: int) -> list[str]:
    if server == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "shop.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--graceful-timeout",
            "5",
        ]
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "shop.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
        ]
    raise DemoError(f"unknown server {server!r}: use gunicorn or uvicorn")


@contextlib.contextmanager
def shop_server(server: str, env: Mapping[str, str]) -> Iterator[str]:
    """Migrate the database, serve the shop, yield its base URL; stop it afterwards."""
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=HERE,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if migrate.returncode != 0:
        raise DemoError(f"migrations failed:\n{migrate.stdout}{migrate.stderr}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            server_command(server, port),
            cwd=HERE,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until_serving(base_url, process, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_until_serving(base_url: str, process: subprocess.Popen[str], log: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise DemoError(f"the server exited with {process.returncode}:\n{log.read()}")
        try:
            if httpx.get(f"{base_url}/login/", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling interval, bounded by the deadline
    log.seek(0)
    raise DemoError(f"the server did not answer within {START_TIMEOUT:g}s:\n{log.read()}")


def expect(response: httpx.Response, status: int, step: str) -> httpx.Response:
    if response.status_code != status:
        raise DemoError(
            f"{step}: expected HTTP {status}, got {response.status_code}: {response.text[:500]}"
        )
    return response


def play_visitor(base_url: str, visitor_cookie: str, visitor_id: str, *, plan: str = "pro") -> str:
    """Sign up and buy *plan* as a browser carrying the visitor cookie; return the email used."""
    email = f"visitor-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(
        base_url=base_url,
        headers={"User-Agent": BROWSER_UA},
        cookies={visitor_cookie: visitor_id},
        timeout=10,
    ) as browser:
        expect(browser.get("/"), 200, "home page")
        expect(browser.get("/signup/"), 200, "signup form")
        signup = {
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            "email": email,
            "password": "correct horse battery",
            "company": "Acme",
            "referral": "newsletter",
        }
        expect(browser.post("/signup/", data=signup), 302, "signup")
        expect(browser.get("/pricing/"), 200, "pricing page")
        purchase = {"csrfmiddlewaretoken": browser.cookies["csrftoken"], "plan": plan}
        expect(browser.post("/pricing/", data=purchase), 302, "purchase")
    return email


def goal_table(goals: Sequence[Mapping[str, Any]]) -> str:
    rows = [("#", "goal", "provider", "visitor", "metadata", "event id")]
    for number, goal in enumerate(goals, 1):
        metadata = ", ".join(f"{k}={v}" for k, v in (goal.get("metadata") or {}).items())
        visitor = goal.get("visitor_id") or "-"
        rows.append(
            (
                str(number),
                goal["name"],
                goal["provider"],
                visitor[:8] + "…" if len(visitor) > 9 else visitor,
                metadata or "-",
                goal.get("event_id") or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def run_demo(server: str) -> int:
    from goaltrack.testing.server import FakeAPIServer

    provider = "datafast"
    with FakeAPIServer() as fake_api, tempfile.TemporaryDirectory() as tmp:
        print(f"fake {provider} API: {fake_api.url} (for the length of this demo)")
        env = shop_environment(fake_api.api_url(provider), Path(tmp) / "shop.sqlite3", provider)
        visitor_id = fake_api.add_pageview(provider)  # what the provider's script records
        print(f"visitor {visitor_id} viewed a page")
        with shop_server(server, env) as base_url:
            print(f"shop: {base_url} under {server}")
            email = play_visitor(base_url, "datafast_visitor_id", visitor_id)
            print(f"visitor signed up as {email} and bought the pro plan")
            try:
                goals = fake_api.wait_for_goals(len(EXPECTED_GOALS), timeout=15)
            except TimeoutError as exc:
                raise DemoError(str(exc)) from exc
        print(f"\nthe fake API received {len(goals)} goals:\n")
        print(goal_table(goals))
        names = sorted(goal["name"] for goal in goals)
        if names != sorted(EXPECTED_GOALS):
            raise DemoError(f"expected goals {sorted(EXPECTED_GOALS)}, got {names}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", choices=("gunicorn", "uvicorn"), default="gunicorn")
    args = parser.parse_args(argv)
    try:
        return run_demo(args.server)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
