"""Migrations of the example shop."""
