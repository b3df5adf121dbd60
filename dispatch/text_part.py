"""The text part derived from an HTML template when the author gives none.

Runs on the template source, once per variant: merge fields and control tags are text to the HTML parser and
survive into the text part, which is then compiled like any other. Links become ``label (URL)``, block elements
line breaks, ``<style>``, ``<script>`` and ``<head>`` disappear, whitespace collapses as a browser would.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset({"p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
                     "blockquote", "hr", "section", "article", "header", "footer"})  # fmt: skip
_HIDDEN = frozenset({"style", "script", "head", "title"})


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._hidden = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.out.append("\n")
        if tag == "a" and self._href:
            href = self._href.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.out.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(source: str) -> str:
    parser = _TextParser()
    parser.feed(source)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).split("\n"))
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
