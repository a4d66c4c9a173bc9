"""goaltrack_check (settings and reachability) and goaltrack_send (one goal, to try a key)."""
