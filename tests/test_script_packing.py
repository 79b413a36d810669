"""Script calls are packed by hiredis directly: byte for byte what redis-py writes, and what
redis-py refuses is still refused."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from ledger.scripts import _pack

ARGUMENT = st.one_of(st.text(), st.binary(), st.integers(), st.floats(allow_nan=False), st.floats())


def _redis_py(command: tuple[object, ...]) -> bytes:
    return b"".join(Connection().pack_command(*command))


@given(keys=st.lists(st.text(min_size=1), min_size=1, max_size=3), args=st.lists(ARGUMENT, max_size=12))
def test_a_packed_call_is_what_redis_py_would_send(keys: list[str], args: list[object]) -> None:
    try:
        expected = _redis_py(("EVALSHA", "f" * 40, len(keys), *keys, *args))
    except UnicodeEncodeError:  # a lone surrogate: neither packer can send it
        with pytest.raises(UnicodeEncodeError):
            _pack(Connection(), "f" * 40, keys, args)
        return
    assert b"".join(_pack(Connection(), "f" * 40, keys, args)) == expected


@pytest.mark.parametrize("bad", [None, True, object()])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    with pytest.raises(redis.DataError):
        _pack(Connection(), "f" * 40, ["k"], [bad])


def test_a_bytearray_goes_through_redis_pys_packer() -> None:
    packed = _pack(Connection(), "f" * 40, ["k"], [bytearray(b"v")])
    assert b"".join(packed) == _redis_py(("EVALSHA", "f" * 40, 1, "k", b"v"))
