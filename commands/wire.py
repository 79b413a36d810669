"""Commands as JSON text: the one reader every surface uses (CLI lines, HTTP bodies).

JSON readers resolve some input silently that a ledger must not: a key given twice keeps
one of its values, `NaN` and `1e400` become floats no other system reads back the same,
and a large integer may become a float. This reader refuses each of those with one clear
line, and turns every way the text can be broken (not UTF-8, not JSON, nested too deeply)
into `InvalidCommand` instead of an exception from the parser. Nesting is limited
by `ledger.storable` once the value is a command.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.errors import InvalidCommand

__all__ = ["loads"]

def loads(data: bytes | str) -> Any:
    """The JSON value in `data`; raises InvalidCommand saying what is wrong with it."""
    text = _text(data)
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise InvalidCommand(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except ValueError as e:  # a duplicate key, a constant, an integer past Python's digit limit
        raise InvalidCommand(f"not accepted as JSON: {e}") from None
    except RecursionError:
        # The parser refuses nesting about a thousand deep; ledger.storable allows far less.
        raise InvalidCommand("not accepted as JSON: nested too deeply") from None


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidCommand(f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} "
                             "cannot start or continue a character") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice!r} appears twice in one object; give it once")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")
