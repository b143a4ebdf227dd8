"""What a visitor reads: every failure has a message, other people's text is shown as text."""

from __future__ import annotations

import pytest

from trainer.hub_calls import HubError
from trainer.messages import escape_html, markdown_text, user_message


def test_html_is_escaped_so_no_tag_is_drawn():
    assert escape_html('<img src="x"> & <a>') == '&lt;img src="x"&gt; &amp; &lt;a&gt;'


@pytest.mark.parametrize(
    "text",
    ["![pixel](http://x/p.png)", "[click](javascript:alert(1))", "<form action=/x>", "http://x/y", "# big", "*bold*"],
)
def test_markdown_text_escapes_every_character_that_could_start_markup(text):
    escaped = markdown_text(text)
    assert "\\" in escaped
    unescaped = [c for i, c in enumerate(escaped) if c in "![]()<>:#*" and (i == 0 or escaped[i - 1] != "\\")]
    assert unescaped == []


def test_markdown_text_is_one_line():
    assert markdown_text("a\n\nb\tc") == "a b c"


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ValueError("batch_size must be from 1 to 20; got 0"), "batch_size must be from 1 to 20; got 0"),
        (KeyError("no item 'x'"), "no item 'x'"),
        (HubError("No model repository 'a/b' on the Hub"), "No model repository 'a/b' on the Hub"),
        (FileNotFoundError(2, "No such file or directory", "/srv/secret/tmp1234"), "(No such file or directory)"),
        (RuntimeError("CUDA at /srv/secret/model.py:12"), "Something went wrong on the server (RuntimeError)"),
        (ValueError(""), "The request was refused (ValueError)."),
    ],
    ids=["value", "key", "hub", "os error", "bug", "empty"],
)
def test_every_failure_gets_a_message_and_none_names_a_server_path(error, message):
    text = user_message(error, expected=(HubError,))
    assert message in text and "/srv/secret" not in text
