"""``python -m goaltrack.options > docs/configuration.md``: the configuration reference page."""

from __future__ import annotations

import sys

from goaltrack.options import reference

sys.stdout.write(reference())
