"""The API keys the tests track with: fake, one per provider, each shaped as its provider's."""

from __future__ import annotations

DATAFAST_KEY = "df_goaltrack_tests_key_0123456789"
FAURYA_KEY = "fy_goaltrack_tests_key_0123456789"
FLOWSERY_KEY = "flow_goaltrack_tests_key_0123456789"
KEYS = {"datafast": DATAFAST_KEY, "faurya": FAURYA_KEY, "flowsery": FLOWSERY_KEY}
