"""Text shown to a visitor: a message for any failure, and other people's text made safe to show.

Gradio draws a ``gr.Info`` / ``gr.Warning`` / ``gr.Error`` message as HTML, through a sanitizer that keeps ``<img>``,
``<a>`` and ``<form>`` (so a prompt of ``<img src=...>`` makes every browser that shows it fetch that address), and
``gr.Markdown`` renders Markdown and HTML the same way. Any text a visitor or the Hub provided (a prompt, a repo id,
a model card field) therefore goes through :func:`escape_html` before it is part of a message, and through
:func:`markdown_text` before it is part of Markdown. The engine itself never formats for a browser; these are the
two places that do, so that a UI has nothing to remember.
"""

from __future__ import annotations

import html
import re

__all__ = ["escape_html", "markdown_text", "user_message"]

# Expected failures carry a message written for the person who caused them (every ``ValueError`` the engine raises
# says what was wrong and what would be right). Anything else is a bug: its text is for the log, not the visitor.
_EXPECTED = (ValueError, TypeError, LookupError, ConnectionError, TimeoutError)
_BUG = "Something went wrong on the server ({name}); it has been logged. Nothing was lost: try again."


def escape_html(text: object) -> str:
    """``text`` to show as itself inside HTML: ``<``, ``>`` and ``&`` become entities, so no tag is ever drawn."""
    return html.escape(str(text), quote=False)


def markdown_text(text: object) -> str:
    """``text`` to show as itself inside Markdown (a sentence or a table cell): one line, every character that could
    start markup or HTML escaped, so a link, an image or a tag shows as the characters that were typed."""
    line = " ".join(str(text).split())
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~:&\"'=])", r"\\\1", line)


def user_message(error: BaseException, *, expected: tuple[type[BaseException], ...] = ()) -> str:
    """A non-empty message for a visitor about ``error``: its own text for an expected failure (``ValueError``,
    ``TypeError``, lookups, network errors, and the types in ``expected``), else a plain note that the server failed
    (the details belong in the log: they may name server paths). Never a server path: an ``OSError`` is told by its
    reason alone."""
    if isinstance(error, OSError) and not isinstance(error, ConnectionError | TimeoutError):
        return f"A file could not be read or written on the server ({error.strerror or type(error).__name__})."
    if isinstance(error, _EXPECTED + expected):
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        return text.strip() or f"The request was refused ({type(error).__name__})."
    return _BUG.format(name=type(error).__name__)
