"""Untrusted JSON is measured before it is parsed: deep nesting is refused without touching the recursion limit."""

from __future__ import annotations

import gc
import json
import sys
from typing import Any

import pytest

from crm import safe_json


@pytest.mark.parametrize(
    ("raw", "depth"),
    [
        (b"{}", 1),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'"[[[[["', 0),  # brackets inside a string do not count
        (b'["\\"[[[[", []]', 2),  # an escaped quote does not end the string
        (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the quote after it
        (b"[[[[", 4),  # malformed: still counted, the parser refuses it
        (b"]]]][", 0),  # closing first never goes below zero in the count that matters
    ],
)
def test_nesting_depth(raw: bytes, depth: int) -> None:
    assert safe_json.nesting_depth(raw, stop_above=100) == depth


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a": 1}', {"a": 1}),
        ("[" * 3 + "]" * 3, [[[]]]),
        ("[" * 64 + "]" * 64, json.loads("[" * 64 + "]" * 64)),  # exactly the limit
        ('{"k": "' + "[" * 5000 + '"}', {"k": "[" * 5000}),
        (b'[{"a": 1}' + b', {"a": 1}' * 2000 + b"]", [{"a": 1}] * 2001),  # many brackets, shallow
    ],
)
def test_loads_accepts(raw: bytes | str, expected: Any) -> None:
    assert safe_json.loads(raw) == expected


@pytest.mark.parametrize("raw", [b"[" * 65 + b"]" * 65, b"[" * 100_000, b'{"a":' * 70 + b"1" + b"}" * 70])
def test_loads_refuses_deep_nesting(raw: bytes) -> None:
    with pytest.raises(safe_json.TooDeep):
        safe_json.loads(raw)


def test_refusal_runs_nothing_near_the_recursion_limit() -> None:
    """The parser never descends, so a collection or finalizer running meanwhile is not starved of stack."""
    failures: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: failures.append(repr(unraisable.exc_value))
    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        with pytest.raises(safe_json.TooDeep):
            safe_json.loads(b"[" * 100_000)
    finally:
        gc.set_threshold(*threshold)
        sys.unraisablehook = previous
    assert failures == []
