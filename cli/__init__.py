"""The `trs-pose` command line: one entry point for everything a user does."""
