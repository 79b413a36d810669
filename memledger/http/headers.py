"""HTTP headers that carry ledger facts: ETag / If-Match (a memory's version), the consistency
token (a receipt's position), page cursors, rate-limit figures.

- `X-Consistency-Token` is `<partition>-<stream id>`, e.g. `3-1717171717171-0`; clients treat
  it as opaque and hand it back as `consistent_with`.
- `ETag` is the memory's version, quoted (`"4"`); `If-Match: "4"` (or `W/"4"`) sends it back
  as the command's `expected_version`. `If-Match: *` asks for no particular version.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any

import orjson

from ledger.eventlog import Receipt

from .problems import FieldError, HttpProblem

__all__ = ["decode_cursor", "encode_cursor", "etag", "expected_version", "receipt_headers", "token", "token_problem",
           "token_receipt"]

_TOKEN = re.compile(r"^([0-9]{1,4})-([0-9]{1,20}-[0-9]{1,20})$")
_ETAG = re.compile(r'^(?:W/)?"?([0-9]{1,18})"?$')


def token(receipt: Receipt) -> str:
    return f"{receipt.partition}-{receipt.stream_id}"


def token_receipt(value: str) -> Receipt:
    """The position a consistency token names, as a receipt to wait on (400 when malformed)."""
    found = _TOKEN.match(value.strip())
    if found is None:
        raise token_problem(value)
    return Receipt(int(found.group(1)), found.group(2), 0, ())


def token_problem(value: str) -> HttpProblem:
    return _bad("query.consistent_with", f"{value!r} is not a consistency token of this ledger "
                                         "(pass X-Consistency-Token as it was given)")


def etag(version: int) -> str:
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version `If-Match` asks for (None when absent or `*`)."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match.strip())
    if found is None:
        raise _bad("header.If-Match", f"{if_match!r} is not an ETag of this API (a version such as \"3\")")
    return int(found.group(1))


def receipt_headers(receipt: Receipt) -> dict[str, str]:
    return {"ETag": etag(receipt.subject_version), "X-Consistency-Token": token(receipt)}


def encode_cursor(key: tuple[Any, ...]) -> str:
    """An opaque page cursor from a query's page key (`MemoryQuery.page_key`)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, ...]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(values, list) or len(values) not in (3, 4):
            raise ValueError("not a page key")
        at = datetime.fromisoformat(values[-3])
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise _bad("query.cursor", "not a cursor of this API: pass `next_cursor` as it was given") from None
    return (*values[:-3], at, *values[-2:])


def _bad(field: str, message: str) -> HttpProblem:
    return HttpProblem(400, "bad_request", "Bad request", message, errors=[FieldError(field=field, message=message)])
