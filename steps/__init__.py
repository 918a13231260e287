"""Thin ZenML steps, one a file, each calling into components/."""
