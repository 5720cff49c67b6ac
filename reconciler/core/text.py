"""Free text from people (reasons, names) as data, never structure. Pure.

A reason or a name ends up in a commit subject, a trailer, status/, a report, a log line and Slack. Each of
those reads line breaks as structure (a paragraph of `Key: value` lines after a blank line or before `---` is
read as trailers by git), and Slack reads `<...>` as a mention or a link (`<!channel>` pings everyone). So such
text is made one line and capped where it enters (`one_line`), and escaped where it reaches Slack
(`slack_escape`). See README "Git as the record" and "Slack".
"""

from __future__ import annotations

import re
import unicodedata

REASON_LIMIT = 200  # characters of a reason (pause, rollback)
NAME_LIMIT = 100  # characters of a name (--as, Slack user name, Requested-By)
MESSAGE_LIMIT = 1000  # characters of a commit subject or trailer value: the last line of defence
ELLIPSIS = "…"

# Unicode bidirectional controls: they make a line display in another order than it reads (trojan source).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_SLACK = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SLACK_SPECIAL = re.compile("[&<>]")


def one_line(text: str, limit: int) -> str:
    """`text` on one line: every run of whitespace (line breaks included) one space, control and bidi characters
    dropped, trimmed, and at most `limit` characters (the last one `…` when it was cut)."""
    kept = "".join(ch for ch in text if ch.isspace() or not _invisible(ch))
    line = " ".join(kept.split())
    if len(line) <= limit:
        return line
    return line[: max(0, limit - 1)].rstrip() + ELLIPSIS if limit > 0 else ""


def slack_escape(text: str) -> str:
    """`text` as Slack mrkdwn shows it literally: `&`, `<` and `>` escaped, so `<!channel>` or `<@U1>` is inert."""
    return _SLACK_SPECIAL.sub(lambda m: _SLACK[m.group()], text)


def _invisible(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs")
