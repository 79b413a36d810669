"""What every command value must be so the log, the archive and every read model can hold it.

A command is appended to the Redis stream as JSON and later copied into PostgreSQL
(`jsonb`, `text` and `timestamptz` columns). Anything those cannot store exactly would be
accepted today and fail later, in a projector, where it can only be dead-lettered: a
replay then misses the event. So the edge refuses it, for every string and number of
every command (internal ones included), wherever it sits: a field, a tag, a metadata key
or value, a transcript message.

- text: no NUL (PostgreSQL `text` and `jsonb` reject `\\u0000`) and valid Unicode (a
  lone surrogate such as `\\ud800` cannot be encoded as UTF-8);
- integers: within the signed 64-bit range (orjson's limit; JSON readers in other
  languages lose precision beyond it);
- floats: finite (JSON has no NaN or Infinity);
- timestamps: with a time zone, between the years 2000 and 2200;
- nesting: at most `MAX_DEPTH` containers deep.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from pydantic import BaseModel

__all__ = ["MAX_DEPTH", "check_storable", "check_timestamp", "text_problem"]

#: How deeply lists and objects may nest inside a command (metadata included).
MAX_DEPTH = 32
INT64 = (-(2**63), 2**63 - 1)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2200, 1, 1, tzinfo=timezone.utc)


def check_timestamp(value: datetime) -> datetime:
    """`value` in UTC; ValueError unless it has a time zone and lies in 2000..2200."""
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone, e.g. 2026-01-31T12:00:00Z")
    if not EARLIEST <= value <= LATEST:
        raise ValueError("timestamp must lie between 2000 and 2200")
    return value.astimezone(timezone.utc)


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Raise ValueError naming `where` (a dotted path) if any part of `value` cannot be stored."""
    # Nearly every value is fine: a quick walk that builds no paths says so, and only a value
    # it doubts is walked again to name the part at fault (this was two thirds of validation).
    if not _storable(value, depth):
        _check(value, where, depth)


def _storable(value: Any, depth: int) -> bool:
    """Whether `value` is storable; exact for the plain JSON types, `_check` decides the rest."""
    kind = type(value)
    if depth > MAX_DEPTH:
        return False
    if kind is str:
        return (value.isascii() and "\x00" not in value) or _UNSTORABLE.search(value) is None
    if value is None or kind is bool:
        return True
    if kind is int:
        return bool(INT64[0] <= value <= INT64[1])
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return all(type(k) is str and _storable(k, 0) and _storable(v, depth + 1) for k, v in value.items())
    if kind is tuple or kind is list:
        return all(_storable(item, depth + 1) for item in value)
    try:
        _check(value, "", depth)
    except ValueError:
        return False
    return True


def _check(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"{where}: integer {_short(value)} is outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} is not a finite number")
    elif isinstance(value, datetime):
        _check_in(check_timestamp, value, where)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                _check_text(key, f"{where} key {key!r}")
            _check(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, BaseModel):
        for name, item in value.__dict__.items():
            _check(item, f"{where}.{name}", depth + 1)
    elif not isinstance(value, UUID):
        raise ValueError(f"{where}: a {type(value).__name__} is not a JSON value")


def text_problem(text: str) -> str | None:
    """Why PostgreSQL text or jsonb could not hold `text`, or None if it can."""
    found = _UNSTORABLE.search(text)  # one scan, no copy (encoding a long text would allocate)
    if found is None:
        return None
    if found.group() == "\x00":
        return "text may not contain NUL characters (\\u0000): PostgreSQL text cannot hold them"
    return f"text is not valid Unicode (a lone surrogate {found.group()!r} at character {found.start()})"


def _check_text(text: str, where: str) -> None:
    if (problem := text_problem(text)) is not None:
        raise ValueError(f"{where}: {problem}")


def _check_in(check: Any, value: Any, where: str) -> None:
    try:
        check(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _short(number: int) -> str:
    # str() of a huge int is slow and, past 4300 digits, refused by Python itself.
    return str(number) if number.bit_length() <= 96 else f"of {number.bit_length()} bits"
