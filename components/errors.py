"""The root of trs-pose's own exceptions, so that a caller can catch every refusal of ours in one clause.

Each subclass also keeps a builtin base (ValueError for bad input, RuntimeError for a failed
operation), so `except ValueError` callers keep working.
"""

from __future__ import annotations


class TrsPoseError(Exception):
    """Raised on purpose by trs-pose; the message names the file, the record and the rule."""
