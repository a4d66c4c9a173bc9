"""Management commands: goaltrack_check and goaltrack_send."""
