"""Tables for people: fitted to a terminal's width, whole when the output goes to a pipe or a file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

UNBOUNDED_WIDTH = 100_000  # wider than any row: rich sizes the table to its content


def print_table(table: Table) -> None:
    """On a terminal, rich fits the table to the window; piped or redirected, where rich would cut every
    row at 80 columns (`challen…`), each value is printed whole."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=UNBOUNDED_WIDTH)
    console.print(table)
