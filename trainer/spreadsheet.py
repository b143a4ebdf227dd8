"""CSV cells that a spreadsheet shows as text: an id is never run as a formula.

Ids come from outside (a folder's file names, a dataset's rows, a pulled classifier's labels), and every CSV this
project writes (labels.csv, a classify's scores, ``predict``'s scores) is meant to be opened in a spreadsheet, which
runs a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula: a file named
``=HYPERLINK("http://...")`` would become a link that leaks data. Such a cell gets a leading ``'`` (OWASP's advice for
CSV injection), and so does one that starts with ``'`` itself, so that :func:`read_cell` gives back every id exactly.
"""

from __future__ import annotations

__all__ = ["read_cell", "safe_cell"]

# What a spreadsheet reads as the start of a formula, and the quote that marks a cell as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def safe_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as it is: behind a ``'`` where it starts like a formula."""
    return _QUOTE + text if text.startswith((*_FORMULA_STARTS, _QUOTE)) else text


def read_cell(cell: str) -> str:
    """The text that :func:`safe_cell` wrote. A cell from before it (a lone leading ``'`` not followed by a formula's
    start or a second ``'``) is kept as it is."""
    return cell[1:] if cell.startswith(_QUOTE) and cell[1:].startswith((*_FORMULA_STARTS, _QUOTE)) else cell
