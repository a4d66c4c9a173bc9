"""``python -m goaltrack.fakeapi``: an alias of ``python -m goaltrack.testing``, kept for scripts
written before the fake API's command line moved there. Everything is in
:mod:`goaltrack.testing.cli`.
"""

from __future__ import annotations

import sys

from goaltrack.testing.cli import PROVIDER_CHOICES, add_arguments, main, run

__all__ = ["PROVIDER_CHOICES", "add_arguments", "main", "run"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m goaltrack.fakeapi"))
