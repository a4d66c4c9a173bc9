"""A small Flask blog that records signups, newsletter subscriptions and logins as goals."""
