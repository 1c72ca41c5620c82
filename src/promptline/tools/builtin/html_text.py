"""The readable text of an HTML page: what a model needs from it, at a fraction of the tokens
of its markup (no scripts, styles or attributes; links kept as ``[text](href)``)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td", "th",
        "tr", "ul",
    }
)  # fmt: skip
_SPACES = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def html_to_text(html: str) -> str:
    """``html`` as plain text: the title first, then the body's text with one line per block
    element, list items as ``- item``, and whitespace collapsed outside ``<pre>``."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return parser.text()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._title: list[str] | None = None
        self._title_text = ""
        self._links: list[tuple[int, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._title = []
        elif tag in _HIDDEN:
            self._hidden += 1
        elif tag == "pre":
            self._pre += 1
        if tag in _BLOCKS:
            self._out.append("\n")
            if tag == "li":
                self._out.append("- ")
        if tag == "a":
            self._links.append((len(self._out), dict(attrs).get("href")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._title is not None:
            self._title_text = " ".join("".join(self._title).split())
            self._title = None
        elif tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _BLOCKS and tag != "li":  # list items: one per line, no blank between
            self._out.append("\n")
        if tag == "a" and self._links:
            start, href = self._links.pop()
            label = "".join(self._out[start:]).strip()
            if label and href and not href.startswith(("#", "javascript:")):
                self._out[start:] = [f"[{label}]({href})"]

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        elif not self._hidden:
            self._out.append(data if self._pre else _SPACES.sub(" ", data))

    def text(self) -> str:
        body = "\n".join(line.strip() for line in "".join(self._out).split("\n"))
        body = _BLANK_LINES.sub("\n\n", body).strip()
        if self._title_text:
            return f"{self._title_text}\n\n{body}" if body else self._title_text
        return body
