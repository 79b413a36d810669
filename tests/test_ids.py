"""UUIDv7 identifiers: version and variant bits, time order, and the string form the command
path writes without building a UUID object."""

from __future__ import annotations

import uuid

from ledger.ids import new_id, uuid7, uuid7_str


def test_uuid7_and_its_string_form_carry_version_7_the_variant_and_the_milliseconds() -> None:
    ms = 1_764_806_400_123
    for value in (uuid7(ms), uuid.UUID(uuid7_str(ms))):
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert value.int >> 80 == ms
    text = uuid7_str(ms)
    assert text == str(uuid.UUID(text)) and len(text) == 36  # canonical: lower case, 8-4-4-4-12


def test_ids_are_unique_and_sort_by_time() -> None:
    texts = [uuid7_str(1_000 + n // 10) for n in range(5_000)]
    assert len(set(texts)) == len(texts)
    assert sorted(texts, key=lambda t: uuid.UUID(t).int >> 80) == texts  # grouped by millisecond, in order
    assert uuid7_str(1_001) > uuid7_str(1_000) and str(uuid7(2_000)) > str(uuid7(1_999))
    ids = {new_id("mem") for _ in range(1_000)}
    assert len(ids) == 1_000 and all(i.startswith("mem_") and len(i) == 36 for i in ids)
