"""ledger.storable's quick walk never passes what its full walk refuses: same verdict for any value."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ledger import storable
from ledger.storable import MAX_DEPTH, check_storable

SCALARS = (st.text() | st.sampled_from(["a\x00b", "\ud800", "é\udfff", ""]) | st.integers() | st.floats()
           | st.booleans() | st.none() | st.just(UUID(int=7)) | st.just(datetime(1999, 1, 1, tzinfo=timezone.utc))
           | st.just(datetime(2026, 1, 1)) | st.just({1, 2}))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3), max_leaves=12)


def _full_walk_refuses(value: Any) -> bool:
    try:
        storable._check(value, "v", 0)
    except ValueError:
        return True
    return False


@hsettings(max_examples=300, deadline=None)
@given(VALUES)
def test_quick_walk_gives_the_full_walks_verdict(value: Any) -> None:
    refused = _full_walk_refuses(value)
    if storable._storable(value, 0):  # it may doubt a storable value (a non-text key), never pass a bad one
        assert not refused
    if refused:
        with pytest.raises(ValueError, match="^v"):
            check_storable(value, "v")
    else:
        check_storable(value, "v")


def test_depth_is_counted_alike() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    check_storable(deep, "v")
    with pytest.raises(ValueError, match="nested more than"):
        check_storable([deep], "v")
    with pytest.raises(ValueError, match=r"v\.k\[0\]: text may not contain NUL"):
        check_storable({"k": ["a\x00"]}, "v")
