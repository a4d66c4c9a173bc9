"""The documentation's code, run as a user pastes it."""
