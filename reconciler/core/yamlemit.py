"""A small deterministic YAML writer for the reconciler's own documents (status files).

Block style, keys sorted, every string double-quoted (JSON escaping is valid YAML), so the same data always
gives the same bytes and a diff shows one line per changed field. It only handles plain data: dicts with string
keys, lists, strings, numbers, booleans and None. pyyaml's representer is about ten times slower on a status
file of a thousand instances, which made every transition of a large rollout cost a tenth of a second.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
# Characters a YAML reader refuses or folds inside a double-quoted scalar (DEL, C1 controls, NEL, line and
# paragraph separators, non-characters); JSON leaves them raw, so they are escaped as \uXXXX.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def _quote(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # nothing to escape: most of a status file (ids, versions, steps, times)
    return _escaped(text)


@functools.lru_cache(maxsize=1 << 12)
def _escaped(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


@functools.lru_cache(maxsize=1 << 16)
def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED:
        return key
    return _quote(key)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 readers want a dot in the mantissa: 1e-05 would come back as a string
        return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text
    if isinstance(value, str):
        return _quote(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Append the lines of a dict or list, each starting at `indent`."""
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, dict | list) and item:
                out.append(f"{indent}{_key(key)}:")
                _emit(item, indent + "  ", out)
            else:
                out.append(f"{indent}{_key(key)}: {_empty(item) if isinstance(item, dict | list) else _scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                sub: list[str] = []
                _emit(item, indent + "  ", sub)
                out.append(f"{indent}- {sub[0].lstrip()}")
                out.extend(sub[1:])
            elif isinstance(item, str):  # a list of names: the bulk of a large status file
                out.append(f"{indent}- {_quote(item)}")
            else:
                out.append(f"{indent}- {_empty(item) if isinstance(item, dict | list) else _scalar(item)}")


def _empty(value: dict[Any, Any] | list[Any]) -> str:
    return "{}" if isinstance(value, dict) else "[]"


def dump(data: dict[str, Any]) -> str:
    """A YAML document for a dict of plain data."""
    out: list[str] = []
    _emit(data, "", out)
    return "\n".join(out) + "\n" if out else "{}\n"
