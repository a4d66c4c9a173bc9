"""Run every benchmark script in bench/, one after the other, each in its own interpreter.

Picks up every ``bench/*.py`` but this one and helper modules (``_*.py``), in sorted order, so
new benchmarks need no registration. ``--quick`` is passed on to the scripts that accept it
(those whose source mentions ``--quick``); the others run in full, with a note. Output is
streamed as it comes; a summary follows. Exits non-zero if any script fails or times out.

    python bench/run_all.py [--quick] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    me = Path(__file__).resolve()
    return sorted(
        path
        for path in BENCH_DIR.glob("*.py")
        if path.resolve() != me and not path.name.startswith("_")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds one script may run (default 600)"
    )
    args = parser.parse_args()

    results: list[tuple[str, str, float]] = []
    for script in scripts():
        command = [sys.executable, str(script)]
        note = ""
        if args.quick:
            if "--quick" in script.read_text(encoding="utf-8"):
                command.append("--quick")
            else:
                note = " (no --quick option: full run)"
        shown = " ".join(["python", f"bench/{script.name}", *command[2:]])
        print(f"\n===== {shown}{note} =====", flush=True)
        started = time.perf_counter()
        try:
            returncode = subprocess.run(command, check=False, timeout=args.timeout).returncode
            status = "ok" if returncode == 0 else f"FAILED (exit {returncode})"
        except subprocess.TimeoutExpired:
            status = f"FAILED (timed out after {args.timeout:g} s)"
        results.append((script.name, status, time.perf_counter() - started))

    print("\n===== summary =====")
    for name, status, seconds in results:
        print(f"{name:<24} {status:<32} {seconds:6.1f} s")
    failed = [name for name, status, _ in results if status != "ok"]
    if failed:
        print(f"{len(failed)} of {len(results)} benchmark(s) failed: {', '.join(failed)}")
        return 1
    print(f"all {len(results)} benchmark(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
