"""HTML mail to readable text; blockquotes become '>' lines so reply stripping still works."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset({
    "p", "div", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
    "section", "article", "header", "footer", "hr", "dl", "dt", "dd",
})  # fmt: skip
_SKIPPED = frozenset({"script", "style", "head", "title", "template"})
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.quote_depth = 0
        self.skip_depth = 0
        self.pre_depth = 0

    def _flush(self) -> None:
        """End the current line if it holds anything (blocks do not stack blank lines).

        A block of only &nbsp; is how Outlook and Word write an empty line on purpose.
        """
        joined = "".join(self.current)
        if joined.strip():
            self._break()
        elif "\u00a0" in joined:
            self.current = []
            self._break()
        self.current = []

    def _break(self) -> None:
        text = "".join(self.current)
        if self.pre_depth == 0:
            text = _SPACES.sub(" ", text).strip()
        prefix = "> " * self.quote_depth
        self.lines.append(prefix + text if text else prefix.rstrip())
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        del attrs
        if tag in _SKIPPED:
            self.skip_depth += 1
        elif tag == "br":
            self._break()
        elif tag == "li":
            self._flush()
            self.current.append("- ")
        elif tag == "blockquote":
            self._flush()
            self.quote_depth += 1
        elif tag in _BLOCKS:
            self.pre_depth += tag == "pre"
            self._flush()
        elif tag in ("td", "th"):
            self.current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "blockquote":
            self._flush()
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag in _BLOCKS or tag == "li":
            self._flush()
            self.pre_depth = max(0, self.pre_depth - (tag == "pre"))

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.current.append(data if self.pre_depth else data.replace("\n", " "))


def html_to_text(html: str) -> str:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    collector._flush()
    text = "\n".join(line.rstrip() for line in collector.lines)
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")
