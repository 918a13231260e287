"""Worked examples a user can run from a fresh clone."""
