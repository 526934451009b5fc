"""Result tables that stay readable on any terminal width.

A table is printed as a grid when every cell fits the console's width; when the grid would cut a
word short (rich's "effici…"), it is printed as one record per row instead: a two-column
"field | value" block per row, which fits an 80-column terminal (like ``psql``'s expanded mode).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

ELLIPSIS = "…"  # what rich puts where a cell or header was cut short


def grid(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], justify: Sequence[str]) -> Table:
    """The usual table: one column per header, one line (or a few, wrapped) per row."""
    out = Table(title=title)
    for header, side in zip(headers, justify, strict=True):
        out.add_column(header, justify=side)  # type: ignore[arg-type]
    for row in rows:
        out.add_row(*row)
    return out


def records(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """The same cells as one ``field | value`` block per row, blocks separated by a rule."""
    out = Table(title=title, show_header=False)
    out.add_column("field", style="bold")
    out.add_column("value")
    for row in rows:
        for header, cell in zip(headers, row, strict=True):
            out.add_row(header, cell)
        out.add_section()
    return out


def cuts_short(table: Table, width: int) -> bool:
    """Whether ``table`` printed ``width`` columns wide would cut a cell or header short."""
    probe = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    probe.print(table)
    return ELLIPSIS in probe.export_text()


def fitted(
    console: Console,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    justify: Sequence[str] | str = "right",
) -> Table:
    """:func:`grid` when it fits ``console``'s width uncut, else :func:`records`.

    Example:
        >>> stdout.print(fitted(stdout, "victims", ["name", "task"], [["brisque", "quality"]], "left"))
    """
    sides = [justify] * len(headers) if isinstance(justify, str) else list(justify)
    wide = grid(title, headers, rows, sides)
    return records(title, headers, rows) if cuts_short(wide, console.width) else wide
