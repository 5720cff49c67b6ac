"""A report's Markdown as HTML, safely: the few forms `render_report` writes (headings, tables, lists, `**bold**`,
`` `code` ``), everything else a paragraph. Every character of the text is escaped first, and the markup is
made only from what the patterns matched, so nothing a reason or a name holds can become HTML. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markupsafe import Markup, escape

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def report_html(text: str, heading_offset: int = 1) -> Markup:
    """HTML of a report; its front matter (for tools) is left out, headings go `heading_offset` levels down."""
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        text = text[4:].split("\n---\n", 1)[1]
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
        elif line.startswith("#"):
            level = min(6, len(line) - len(line.lstrip("#")) + heading_offset)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            index += 1
        elif line.startswith("|"):
            block, index = _take(lines, index, lambda s: s.startswith("|"))
            out.append(_table(block))
        elif line.startswith("- "):
            block, index = _take(lines, index, lambda s: s.startswith("- "))
            out.append("<ul>" + "".join(f"<li>{_inline(item[2:])}</li>" for item in block) + "</ul>")
        else:
            block, index = _take(lines, index, lambda s: bool(s.strip()) and not s.startswith(("#", "|", "- ")))
            out.append(f"<p>{_inline(' '.join(block))}</p>")
    return Markup("\n".join(out))


def _take(lines: list[str], index: int, belongs: Callable[[str], bool]) -> tuple[list[str], int]:
    block = []
    while index < len(lines) and belongs(lines[index]):
        block.append(lines[index])
        index += 1
    return block, index


def _cells(row: str) -> list[str]:
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(inner)]


def _table(rows: list[str]) -> str:
    if len(rows) > 1 and _SEPARATOR.match(rows[1].strip()):
        head, body = rows[0], rows[2:]
    else:
        head, body = None, rows
    parts = ['<div class="table-wrap"><table>']
    if head is not None:
        parts.append("<thead><tr>" + "".join(f'<th scope="col">{_inline(c)}</th>' for c in _cells(head))
                     + "</tr></thead>")
    parts.append("<tbody>")
    for row in body:
        parts.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(row)) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


def _inline(text: str) -> str:
    """Escape, then turn the matched `code` and **bold** into elements (their content is escaped text)."""
    html = str(escape(text))
    html = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", html)
