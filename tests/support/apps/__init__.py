"""Apps the system and adapter tests serve in real server processes."""
