"""The status writer: what it writes reads back as the same data, and the same data gives the same bytes."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.yamlemit import dump

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text()
keys = st.text(min_size=1)
data = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, data, max_size=5))
def test_round_trip_through_a_yaml_reader(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(doc)) == (doc or {})


def test_block_style_sorted_and_quoted() -> None:
    text = dump({"phase": "Succeeded", "batches": [{"name": "canary", "instances": ["a/b"]}], "on": None, "n": 1.5})
    assert text == (
        'batches:\n'
        '  - instances:\n'
        '      - "a/b"\n'
        '    name: "canary"\n'
        '"n": 1.5\n'
        '"on": null\n'
        'phase: "Succeeded"\n'
    )


def test_strings_that_look_like_other_types_stay_strings() -> None:
    doc = {"version": "1.10", "flag": "yes", "empty": "", "multi": "a\nb: c", "list": [], "map": {}}
    assert yaml.safe_load(dump(doc)) == doc


def test_a_key_ending_in_a_newline_is_quoted() -> None:
    assert yaml.safe_load(dump({"A\n": None, "0": 1})) == {"A\n": None, "0": 1}
