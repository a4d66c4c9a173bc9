"""``python -m goaltrack.testing``: run the fake provider API in the foreground (see ``--help``)."""

import sys

from goaltrack.testing.cli import main

if __name__ == "__main__":
    sys.exit(main())
