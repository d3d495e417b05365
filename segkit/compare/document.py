"""A small document model (headings, paragraphs, lists, tables, figures) rendered as markdown and as one
self-contained HTML page (inline CSS, PNG figures embedded as base64 data URIs, no scripts, no links out).

Headings, paragraphs, list items and captions may hold `code` spans (backticks) and ``\\` `` for a literal
backtick; put values into them with :func:`literal` or :func:`code`. Table cells are literal text. Everything else
is escaped for each format: ``& < >`` (and ``|`` and backticks in table cells) in markdown, HTML's own escaping in
HTML.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

FIGURES = "figures"
_TOKEN = re.compile(r"\\`|`([^`]+)`")  # an escaped backtick, or a code span
_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1300px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; } th { background: #f2f2f2; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { font-size: 0.92em; color: #444; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class Heading:
    """A section title (level 1 is the page title)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Plain text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table of text cells; the first column is the row name."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A PNG figure with its file name (markdown links ``figures/NAME``) and a caption saying what it shows."""

    name: str
    png: bytes
    alt: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image


def literal(value: str) -> str:
    """``value`` as literal text inside a heading, paragraph, list item or caption (its backticks escaped)."""
    return str(value).replace("`", "\\`")


def code(value: str) -> str:
    """``value`` as a code span, or as literal text when it holds a backtick itself."""
    value = str(value)
    return f"`{value}`" if "`" not in value else literal(value)


def _tokens(text: str, plain, escaped: str, span) -> str:
    """``text`` with its plain runs, escaped backticks and code spans each rendered by the given format."""
    out, end = [], 0
    for match in _TOKEN.finditer(text):
        out += [plain(text[end:match.start()]), escaped if match.group(1) is None else span(match.group(1))]
        end = match.end()
    return "".join([*out, plain(text[end:])])


def _md_text(text: str) -> str:
    return _tokens(text, lambda t: t.translate(_MD_ESCAPES), "\\`", lambda c: f"`{c}`")


def _md_cell(text: str) -> str:
    return text.translate(_MD_ESCAPES).replace("`", "\\`").replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """The blocks as GitHub-flavoured markdown; figures link to ``figures/NAME``."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _md_text(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [_md_text(block.text), ""]
        elif isinstance(block, Bullets):
            lines += [f"- {_md_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(block.header) - 1)) + "|")
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows] + [""]
        else:
            lines += [f"![{_md_cell(block.alt)}]({FIGURES}/{block.name})", "", f"*{_md_text(block.caption)}*", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    return _tokens(text, lambda t: html.escape(t, quote=True), "`",
                   lambda c: f"<code>{html.escape(c, quote=True)}</code>")


def _html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{_inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(cell, quote=True)}</th>" for cell in block.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell, quote=True)}</td>" for cell in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    data = base64.b64encode(block.png).decode("ascii")
    return (f'<figure><img alt="{html.escape(block.alt, quote=True)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_inline(block.caption)}</figcaption></figure>")


def to_html(blocks: list[Block], title: str) -> str:
    """One self-contained HTML page."""
    body = "\n".join(_html_block(block) for block in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")
