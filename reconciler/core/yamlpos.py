"""YAML text to plain data plus the line of every key, so errors can say `path:line: field: message`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Loc = tuple[str | int, ...]

# The C loader composes large files several times faster; pyyaml built without libyaml lacks it.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlSyntaxError(ValueError):
    """Text that is not YAML at all; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Located:
    """A parsed document and the 1-based line where each key path starts."""

    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest ancestor that exists (a missing field is reported at its parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1


def load(text: str) -> Located:
    """Parse one YAML document; an empty text is an empty mapping."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, f"{err.problem or err}".strip()) from None
    except yaml.YAMLError as err:  # e.g. several documents in one file
        raise YamlSyntaxError(1, str(err)) from None
    if node is None:
        return Located({}, {(): 1})
    lines: dict[Loc, int] = {}
    return Located(_Builder().build(node, (), lines), lines)


class _Builder:
    """Turns composed nodes into plain values, recording the line of each key path."""

    def __init__(self) -> None:
        self._constructor = yaml.SafeLoader(stream="")

    def scalar(self, node: yaml.Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def build(self, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
        return _build(self, node, loc, lines)


def _build(builder: _Builder, node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = builder.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            if key == "<<":
                raise YamlSyntaxError(key_node.start_mark.line + 1, "merge keys (<<) are not supported")
            if key in out:
                raise YamlSyntaxError(key_node.start_mark.line + 1, f"duplicate key {key!r}")
            lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _build(builder, value_node, (*loc, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            items.append(_build(builder, item, (*loc, index), lines))
        return items
    return builder.scalar(node)
