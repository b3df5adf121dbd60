"""JSON from outside, refused before the parser recurses too deeply.

`json.loads` recurses once per nesting level; a hostile body of `[[[[...` takes it to the interpreter's recursion
limit. Catching the RecursionError afterwards is not enough: whatever runs at that depth meanwhile (a garbage
collection, a finalizer, a warning) fails too and is reported as an unraisable exception. So the depth is measured
first, in one linear pass, and anything deeper than any body we accept is refused unparsed.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64

_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class TooDeep(ValueError):
    """The document nests deeper than MAX_DEPTH."""


def nesting_depth(raw: bytes, stop_above: int = MAX_DEPTH) -> int:
    """The deepest bracket nesting outside strings, counted up to stop_above + 1.

    One linear pass over the bytes that matter (brackets, quotes, backslashes); malformed input still yields a
    number, and the parser then judges it.
    """
    structure = raw.translate(None, _STRUCTURE)
    depth = deepest = 0
    in_string = escaped = False
    for byte in structure:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_above:
                    break
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads for untrusted input: ValueError (TooDeep for nesting) instead of a RecursionError."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data, max_depth) > max_depth:
        raise TooDeep(f"nested deeper than {max_depth} levels")
    return json.loads(raw)
