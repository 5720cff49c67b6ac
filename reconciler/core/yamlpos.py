"""YAML text to plain data plus the line of every key, so errors can say `path:line: field: message`.

Fleet files are input from anyone who can push, so the loader has limits (README "Limits"): no anchors or
aliases (a fleet file never needs them, and refusing them outright makes an alias bomb cost nothing), at most
`MAX_DEPTH` levels of nesting and `MAX_CHARS` characters. It builds values straight from the parser's events, in
one pass and without recursion; every problem, including a scalar that cannot be constructed (an impossible date,
an unknown tag), is a `YamlSyntaxError` with its line, never another exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

Loc = tuple[str | int, ...]

MAX_DEPTH = 64
MAX_CHARS = 1 << 20  # the same bound as a fleet file's size (fleet.MAX_FILE_BYTES)

# The C parser is several times faster on large files; pyyaml built without libyaml lacks it.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NOT_TEXT = {"tag:yaml.org,2002:int": "a number", "tag:yaml.org,2002:float": "a number",
             "tag:yaml.org,2002:bool": "a boolean", "tag:yaml.org,2002:timestamp": "a date"}
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str", "timestamp",
                                                           "binary")}
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "!"}
_STR = "tag:yaml.org,2002:str"  # its value is the scalar's text as it is: nothing to construct
ANCHORS_REFUSED = "anchors (&) and aliases (*) are not allowed in fleet files"


class YamlSyntaxError(ValueError):
    """Text that is not YAML grayops accepts; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Located:
    """A parsed document, the 1-based line where each key path starts, and the source of unquoted non-text values.

    `unquoted` maps the location of a plain scalar that YAML read as a number, boolean or date to its text as
    written and what YAML made of it (`("1.10", "a number")`), so a message can echo `1.10` rather than `1.1`.
    """

    data: Any
    lines: dict[Loc, int]
    unquoted: dict[Loc, tuple[str, str]] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest ancestor that exists (a missing field is reported at its parent)."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1


def load(text: str) -> Located:
    """Parse one YAML document within the limits; an empty text is an empty mapping."""
    builder = _Builder()
    _parse(text, MAX_CHARS, builder.take)
    return builder.result()


def check(text: str, max_chars: int = MAX_CHARS) -> None:
    """Raise `YamlSyntaxError` where `text` breaks the limits (size, anchors and aliases, depth), without building
    anything: for a large document grayops wrote itself (a status file), before a faster loader reads it."""
    depth = 0

    def take(event: yaml.Event) -> None:
        nonlocal depth
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if getattr(event, "anchor", None) is not None or isinstance(event, yaml.AliasEvent):
            raise YamlSyntaxError(line, ANCHORS_REFUSED)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSyntaxError(line, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1

    _parse(text, max_chars, take)


def _parse(text: str, max_chars: int, take: Callable[[yaml.Event], None]) -> None:
    """Feed the parser's events to `take`; every problem is a YamlSyntaxError with its line."""
    if len(text) > max_chars:
        raise YamlSyntaxError(1, f"{len(text)} characters, over the limit of {max_chars}")
    try:
        for event in yaml.parse(text, Loader=_Loader):
            take(event)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise YamlSyntaxError(mark.line + 1 if mark else 1, _one_line(err.problem or str(err))) from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow, e.g. a control character
        raise YamlSyntaxError(_line_at(text, err.position), f"character {_char(err.character)} is not allowed in "
                                                            "YAML") from None
    except yaml.YAMLError as err:
        raise YamlSyntaxError(1, _one_line(str(err))) from None
    except UnicodeEncodeError:  # a lone surrogate: never from a decoded file, but a caller may pass anything
        raise YamlSyntaxError(1, "the text is not valid Unicode") from None


def _line_at(text: str, position: int) -> int:
    """The line of a reader error: the C parser counts bytes of UTF-8, the pure Python one characters."""
    if _Loader is not yaml.SafeLoader:
        return text.encode("utf-8", "replace")[:position].count(b"\n") + 1
    return text.count("\n", 0, position) + 1


def _char(value: int | str) -> str:
    code = value if isinstance(value, int) else ord(value[:1] or "\0")
    return f"U+{code:04X}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass
class _Open:
    """A mapping or sequence being built: its value, its location and, in a mapping, the key awaiting a value."""

    value: dict[Any, Any] | list[Any]
    loc: Loc
    key: Any = None
    has_key: bool = False


class _Builder:
    """Plain values from parser events, with a stack instead of recursion."""

    def __init__(self) -> None:
        self._constructor = yaml.SafeLoader("")
        self._resolver: Any = self._constructor  # the loader is also the resolver (untyped in the stubs)
        self._stack: list[_Open] = []
        self._documents = 0
        self._root: Any = None
        self._done = False
        self.lines: dict[Loc, int] = {}
        self.unquoted: dict[Loc, tuple[str, str]] = {}
        self._tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def result(self) -> Located:
        if self._documents == 0:
            return Located({}, {(): 1})
        return Located(self._root, self.lines, self.unquoted)

    def take(self, event: yaml.Event) -> None:
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if getattr(event, "anchor", None) is not None or isinstance(event, yaml.AliasEvent):
            raise YamlSyntaxError(line, ANCHORS_REFUSED)
        if isinstance(event, yaml.ScalarEvent):  # the most frequent first
            self._scalar(event, line)
        elif isinstance(event, yaml.DocumentStartEvent):
            self._documents += 1
            if self._documents > 1:
                raise YamlSyntaxError(line, "one document per file: found a second one (---)")
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            if len(self._stack) >= MAX_DEPTH:
                raise YamlSyntaxError(line, f"nested deeper than {MAX_DEPTH} levels")
            if event.tag is not None and event.tag not in _COLLECTION_TAGS:
                raise YamlSyntaxError(line, f"unknown tag {event.tag!r}")
            loc = self._place(line)
            value: dict[Any, Any] | list[Any] = {} if isinstance(event, yaml.MappingStartEvent) else []
            self._stack.append(_Open(value, loc))
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            done = self._stack.pop()
            self._attach(done.value, done.loc)

    def _scalar(self, event: yaml.ScalarEvent, line: int) -> None:
        top = self._stack[-1] if self._stack else None
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._tag_of(event.value, event.implicit)
        if top is not None and isinstance(top.value, dict) and not top.has_key:
            if not event.style and event.value == "<<":
                raise YamlSyntaxError(line, "merge keys (<<) are not supported")
            key = self._value(event, tag, line)
            if key in top.value:
                raise YamlSyntaxError(line, f"duplicate key {key!r}")
            top.key, top.has_key = key, True
            self.lines[(*top.loc, key)] = line
            return
        loc = self._place(line)
        value = self._value(event, tag, line)
        if not event.style and tag in _NOT_TEXT:  # plain: None from the Python parser, "" from C
            self.unquoted[loc] = (event.value, _NOT_TEXT[tag])
        self._attach(value, loc)

    def _value(self, event: yaml.ScalarEvent, tag: str, line: int) -> Any:
        if tag == _STR:
            return event.value
        return self._construct(yaml.ScalarNode(tag, event.value, None, None, style=event.style), line)  # lines: ours

    def _tag_of(self, value: str, implicit: tuple[bool, bool]) -> str:
        """The tag YAML resolves an untagged scalar to, which depends on its text and style alone: a large file
        repeats the same few texts (keys, label values), so each is resolved once."""
        tag = self._tags.get((value, implicit))
        if tag is None:
            tag = self._tags[(value, implicit)] = self._resolver.resolve(yaml.ScalarNode, value, implicit)
        return tag

    def _place(self, line: int) -> Loc:
        """The location of the value that starts here, recording its line."""
        if not self._stack:
            loc: Loc = ()
        else:
            top = self._stack[-1]
            if isinstance(top.value, dict):
                if not top.has_key:
                    raise YamlSyntaxError(line, "a key must be a plain value, not a mapping or a list")
                loc = (*top.loc, top.key)
            else:
                loc = (*top.loc, len(top.value))
        self.lines.setdefault(loc, line)
        return loc

    def _attach(self, value: Any, loc: Loc) -> None:
        if not self._stack:
            self._root = value
            return
        top = self._stack[-1]
        if isinstance(top.value, dict):
            top.value[top.key] = value
            top.key, top.has_key = None, False
        else:
            top.value.append(value)

    def _construct(self, node: yaml.ScalarNode, line: int) -> Any:
        """The scalar's value, by the safe constructor of its tag (called directly: nothing is cached per node)."""
        if node.tag not in _SCALAR_TAGS:
            raise YamlSyntaxError(line, f"unknown tag {node.tag!r}")
        try:
            return self._constructor.yaml_constructors[node.tag](self._constructor, node)
        except yaml.constructor.ConstructorError as err:
            raise YamlSyntaxError(line, _one_line(err.problem or str(err))) from None
        except (ValueError, TypeError, OverflowError) as err:
            if node.tag == "tag:yaml.org,2002:timestamp":
                raise YamlSyntaxError(line, f"{node.value} is not a valid date ({err}); quote it to make it "
                                            "text") from None
            raise YamlSyntaxError(line, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]} "
                                        f"({err})") from None
