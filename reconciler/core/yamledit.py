"""Change one scalar field of a YAML document by editing its text, so comments and layout survive.

Owns `set_field`, used to turn a chat or CLI command (`/pause`, `/rollback`) into the smallest possible diff
of a human-written file. Pure: text in, text out.

How: the document is parsed into events (PyYAML's pure-Python parser, whose marks are character offsets in
the text) and a small tree of spans is built from them. An existing value has exactly its scalar's characters
replaced; a missing key is inserted after the parent mapping's last line (block style) or before its closing
brace (flow style). The result is parsed again and must equal the original data with only that field
changed, otherwise `ValueError` is raised rather than returning a surprising edit.

Errors: `ValueError` only (bad path, missing or non-mapping parent, a value that is not a scalar, an alias,
text that is not YAML).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["set_field"]

_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class _Node:
    kind: str  # "scalar", "mapping", "sequence", "alias"
    start: int  # first character of the node, including any anchor or tag
    end: int  # one past its last character
    flow: bool = False
    style: str | None = None  # scalar style: None (plain), "'", '"', "|", ">"
    value: str = ""
    body_start: int = 0  # scalars: first character of the scalar itself, after any anchor or tag
    in_flow: bool = False  # inside a flow collection, where `,[]{}` end a plain scalar
    items: list[tuple[_Node, _Node]] = field(default_factory=list)  # mappings
    children: list[_Node] = field(default_factory=list)  # sequences


def set_field(text: str, path: tuple[str, ...], value: str | bool) -> str:
    """Return `text` with the scalar at `path` (mapping keys from the root) set to `value`.

    Everything else in the text (comments, blank lines, key order, quoting, line endings) is kept.
    """
    if not path:
        raise ValueError("set_field: empty path")
    if not isinstance(value, str | bool):
        raise ValueError(f"set_field: value must be a string or a boolean, not {type(value).__name__}")
    try:
        before = yaml.safe_load(text)
        root = _build_tree(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"set_field: not valid YAML: {exc}") from exc

    parent = root
    for depth, key in enumerate(path[:-1]):
        if parent is None or parent.kind != "mapping":
            raise ValueError(f"set_field: {_parent_name(path, depth)} is not a mapping")
        where = ".".join(path[: depth + 1])
        pair = _lookup(parent, key)
        if pair is None:
            raise ValueError(f"set_field: {where} is missing")
        parent = _resolved(pair, where)
    if parent is None or parent.kind != "mapping":
        raise ValueError(f"set_field: {_parent_name(path, len(path) - 1)} is not a mapping")

    eol = "\r\n" if "\r\n" in text else "\n"
    pair = _lookup(parent, path[-1])
    if pair is None:
        result = _insert(text, parent, path[-1], value, eol)
    else:
        result = _replace(text, pair, ".".join(path), value)

    # The edit must mean exactly "this field changed"; anything else is a bug we refuse to commit.
    expected = copy.deepcopy(before)
    try:
        target = expected
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    except (KeyError, TypeError) as exc:  # e.g. a key written `1` is the integer 1, not "1"
        raise ValueError(f"set_field: {'.'.join(path)} does not name string keys in this document") from exc
    try:
        after = yaml.safe_load(result)
    except yaml.YAMLError as exc:
        raise ValueError(f"set_field: editing {'.'.join(path)} would produce invalid YAML: {exc}") from exc
    if after != expected:
        raise ValueError(f"set_field: could not edit {'.'.join(path)} without changing other data")
    return result


# --- reading ------------------------------------------------------------------------------------------------


def _build_tree(text: str) -> _Node | None:
    """The first document as a tree of spans; None for an empty document."""
    # Scalar tokens know where the scalar itself starts; events only know where its anchor/tag starts.
    body_starts = {
        tok.end_mark.index: tok.start_mark.index
        for tok in yaml.scan(text, Loader=yaml.SafeLoader)
        if isinstance(tok, yaml.ScalarToken)
    }
    events = iter(yaml.parse(text, Loader=yaml.SafeLoader))
    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            break
    else:
        return None
    event = next(events)
    if isinstance(event, yaml.DocumentEndEvent):
        return None
    return _node(event, events, body_starts, in_flow=False)


def _node(event: Any, events: Any, body_starts: dict[int, int], in_flow: bool) -> _Node:
    start, end = event.start_mark.index, event.end_mark.index
    if isinstance(event, yaml.AliasEvent):
        return _Node("alias", start, end, in_flow=in_flow)
    if isinstance(event, yaml.ScalarEvent):
        body = body_starts.get(end)
        if body is None or body < start or start == end:  # an empty scalar has no token of its own
            body = end
        return _Node("scalar", start, end, style=event.style, value=event.value, body_start=body,
                     in_flow=in_flow)
    if isinstance(event, yaml.MappingStartEvent):
        node = _Node("mapping", start, end, flow=bool(event.flow_style), in_flow=in_flow)
        inner = in_flow or node.flow
        while not isinstance(ev := next(events), yaml.MappingEndEvent):
            key = _node(ev, events, body_starts, inner)
            node.items.append((key, _node(next(events), events, body_starts, inner)))
        node.end = ev.end_mark.index if ev.end_mark is not None else node.end
        return node
    if isinstance(event, yaml.SequenceStartEvent):
        node = _Node("sequence", start, end, flow=bool(event.flow_style), in_flow=in_flow)
        inner = in_flow or node.flow
        while not isinstance(ev := next(events), yaml.SequenceEndEvent):
            node.children.append(_node(ev, events, body_starts, inner))
        node.end = ev.end_mark.index if ev.end_mark is not None else node.end
        return node
    raise ValueError(f"set_field: unexpected YAML event {type(event).__name__}")  # pragma: no cover


def _lookup(mapping: _Node, key: str) -> tuple[_Node, _Node] | None:
    found = None
    for pair in mapping.items:  # the last duplicate wins, as in yaml.safe_load
        if pair[0].kind == "scalar" and pair[0].value == key:
            found = pair
    return found


def _resolved(pair: tuple[_Node, _Node], where: str) -> _Node:
    if pair[1].kind == "alias":
        raise ValueError(f"set_field: {where} is an alias; edit the anchored node instead")
    return pair[1]


def _parent_name(path: tuple[str, ...], depth: int) -> str:
    return ".".join(path[:depth]) if depth else "the document root"


def _content_end(node: _Node, text: str) -> int:
    """One past the node's last meaningful character (block collections and block scalars run on)."""
    if node.kind == "mapping" and not node.flow and node.items:
        return _content_end(node.items[-1][1], text)
    if node.kind == "sequence" and not node.flow and node.children:
        return _content_end(node.children[-1], text)
    if node.kind == "scalar" and node.style in ("|", ">"):
        return node.start + len(text[node.start : node.end].rstrip(" \t\r\n"))
    return node.end


# --- writing ------------------------------------------------------------------------------------------------


def _replace(text: str, pair: tuple[_Node, _Node], where: str, value: str | bool) -> str:
    key, node = pair
    if node.kind == "alias" or node.start < key.end:
        raise ValueError(f"set_field: {where} is an alias; edit the anchored node instead")
    if node.kind != "scalar":
        raise ValueError(f"set_field: {where} is a {node.kind}, not a scalar")
    prefix = text[node.start : node.body_start]
    if prefix.startswith("&") and f"*{prefix[1:].split()[0]}" in text:
        raise ValueError(f"set_field: {where} is anchored and aliased elsewhere; an edit would change both")
    flow_context = node.in_flow
    if node.body_start == node.end:  # empty value (`key:` or `key: &a`): nothing to replace, add the value
        sep = " " if ":" in text[key.end : node.end] else ": "
        return text[: node.end] + sep + _render(value, None, flow_context) + text[node.end :]
    end = _content_end(node, text) if node.style in ("|", ">") else node.end
    return text[: node.body_start] + _render(value, node.style, flow_context) + text[end:]


def _insert(text: str, mapping: _Node, key: str, value: str | bool, eol: str) -> str:
    inner = mapping.flow or mapping.in_flow
    entry = f"{_render(key, None, inner)}: {_render(value, None, inner)}"
    if mapping.flow:
        if mapping.items:
            at = _content_end(mapping.items[-1][1], text)
            return text[:at] + ", " + entry + text[at:]
        brace = mapping.start + text[mapping.start : mapping.end].index("{")
        return text[: brace + 1] + entry + text[brace + 1 :]
    # Indent like the existing keys: the first key's column (also right for `- name: x` in a sequence).
    first_key = mapping.items[0][0]
    indent = " " * (first_key.start - (text.rfind("\n", 0, first_key.start) + 1))
    at = _content_end(mapping, text)
    line_end = text.find("\n", at)
    if line_end == -1:  # last line without a newline
        return text + eol + indent + entry
    return text[: line_end + 1] + indent + entry + eol + text[line_end + 1 :]


def _render(value: str | bool, style: str | None, flow: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if style is None and _plain_ok(value, flow):
        return value
    if style == "'" and all(_printable(ch) and ch not in "\r\n" for ch in value):
        return "'" + value.replace("'", "''") + "'"
    return _double_quoted(value)


def _plain_ok(value: str, flow: bool) -> bool:
    """True when `value` written plain reads back as this same string (never as a number, bool or null)."""
    if not value or value != value.strip() or any(ch in value for ch in "\r\n\t"):
        return False
    if any(not _printable(ch) for ch in value):
        return False
    if flow and any(ch in value for ch in ",[]{}"):
        return False
    contexts = [f"k: {value}\n"] + ([f"{{k: {value}}}\n"] if flow else [])
    for doc in contexts:
        try:
            if yaml.safe_load(doc) != {"k": value}:
                return False
        except yaml.YAMLError:
            return False
    return True


def _printable(ch: str) -> bool:
    o = ord(ch)
    return (
        ch in "\t\n\r\x85"
        or 0x20 <= o <= 0x7E
        or 0xA0 <= o <= 0xD7FF
        or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)
        or 0x10000 <= o <= 0x10FFFF
    )


def _double_quoted(value: str) -> str:
    out = ['"']
    named = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
    for ch in value:
        if ch in named:
            out.append(named[ch])
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) <= 0xFF:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
