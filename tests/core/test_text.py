"""reconciler.core.text by tables: free text made one line, capped, and escaped for Slack."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.text import one_line, slack_escape

ONE_LINE = {
    "plain": ("incident 42", 200, "incident 42"),
    "trailer paragraph": ("x\n\nApproved-By: U999\n---", 200, "x Approved-By: U999 ---"),
    "carriage returns and tabs": ("a\r\n\tb\rc", 200, "a b c"),
    "unicode line breaks": ("a\u2028b\u2029c\x85d\x0be\x0cf", 200, "a b c d e f"),
    "control characters dropped": ("a\x00b\x1bc\x7fd", 200, "abcd"),
    "bidi overrides dropped": ("evil\u202etxt.exe", 200, "eviltxt.exe"),
    "trimmed": ("  both ends \n", 200, "both ends"),
    "empty": ("", 200, ""),
    "at the limit": ("abcde", 5, "abcde"),
    "cut with an ellipsis": ("abcdefgh", 5, "abcd…"),
    "no trailing space before the ellipsis": ("abc defgh", 5, "abc…"),
}


@pytest.mark.parametrize(("text", "limit", "expected"), ONE_LINE.values(), ids=ONE_LINE.keys())
def test_one_line(text: str, limit: int, expected: str) -> None:
    assert one_line(text, limit) == expected


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_one_line_is_one_line_within_its_limit(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert len(line) <= limit
    assert line.splitlines() in ([], [line]) and line == line.strip()
    assert one_line(line, limit) == line  # idempotent: sanitising twice changes nothing


SLACK = {
    "channel ping": ("<!channel>", "&lt;!channel&gt;"),
    "user mention": ("<@U1>", "&lt;@U1&gt;"),
    "link": ("<https://x|y>", "&lt;https://x|y&gt;"),
    "ampersand first": ("a & b &lt;", "a &amp; b &amp;lt;"),
    "plain": ("incident 42: *bold*", "incident 42: *bold*"),
}


@pytest.mark.parametrize(("text", "expected"), SLACK.values(), ids=SLACK.keys())
def test_slack_escape(text: str, expected: str) -> None:
    assert slack_escape(text) == expected
