"""What the script tag tests share: the tracking id they use and a hostile one."""

from __future__ import annotations

TRACKING_ID = "dfid_tests_0123"
#: A tracking id that would break out of its attribute if not escaped.
HOSTILE_ID = 'dfid_x"><script>alert(1)</script>'
#: The fake API's stand-in for DataFast's script (``goaltrack.testing.fake_api.script``).
FAKE_SCRIPT = "http://127.0.0.1:8765/datafast/js/script.js"
