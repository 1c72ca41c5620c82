"""HTML reduced to readable text for web_get."""

from __future__ import annotations

from promptline.tools.builtin.html_text import html_to_text

PAGE = """<!doctype html>
<html><head><title>The  Title</title><style>p { color: red }</style>
<script>var secret = 1;</script></head>
<body>
  <h1>Hello</h1>
  <p>Fish &amp; chips,
     twice.</p>
  <ul><li>one</li><li>two</li></ul>
  <p>See <a href="https://example.com/docs">the docs</a> or <a href="#top">top</a>.</p>
  <pre>  keep
    indentation</pre>
  <noscript>enable js</noscript>
</body></html>"""


def test_html_becomes_text_with_title_blocks_lists_and_links() -> None:
    text = html_to_text(PAGE)

    assert text.splitlines() == [
        "The Title",
        "",
        "Hello",
        "",
        "Fish & chips, twice.",
        "",
        "- one",
        "- two",
        "",
        "See [the docs](https://example.com/docs) or top.",
        "",
        "keep",
        "indentation",
    ]


def test_scripts_styles_and_noscript_are_dropped() -> None:
    text = html_to_text(PAGE)

    assert "secret" not in text
    assert "color" not in text
    assert "enable js" not in text


def test_plain_fragments_work() -> None:
    assert html_to_text("just <b>bold</b> text") == "just bold text"
    assert html_to_text("") == ""
