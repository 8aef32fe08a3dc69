"""Packing metric points into chunks and reading them back."""

from __future__ import annotations

import math
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from opsloop.tracking.series import pack, unpack

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, math.nan])
)
points = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), values, st.integers(0, 5), st.integers(-3, 3)),
    max_size=60,
)


def _bits(x: float) -> bytes:
    return struct.pack("<d", math.nan if x != x else x)


@given(st.lists(points, min_size=1, max_size=4))
# 0.0 and -0.0 compare equal: identical points must still end up side by side and merge.
@example(batches=[[("a", 0.0, 0, 0), ("a", -0.0, 0, 0), ("a", 0.0, 0, 0)]])
def test_round_trip_merges_identical_points(
    batches: list[list[tuple[str, float, int, int]]],
) -> None:
    chunks: dict[tuple[str, str], tuple[bytes, bytes, bytes]] = {}
    for batch in batches:
        rows, _ = pack("r", batch)
        for r in rows:
            chunks[(r[1], r[2])] = (r[6], r[7], r[8])  # a retried chunk is stored once
    for key in ("a", "b"):
        got = unpack(key, [c for (k, _), c in chunks.items() if k == key])
        expected = {(p[3], p[2], _bits(p[1])) for batch in batches for p in batch if p[0] == key}
        # Each distinct (step, timestamp, value) point exactly once...
        assert sorted((m.step, m.timestamp, _bits(m.value)) for m in got) == sorted(expected)
        assert len(got) == len(expected)
        # ...in (step, timestamp) order.
        assert [(m.step, m.timestamp) for m in got] == sorted((m.step, m.timestamp) for m in got)


def test_latest_is_greatest_step_then_timestamp_then_value() -> None:
    _, latest = pack(
        "r", [("a", 1.0, 5, 1), ("a", 9.0, 1, 2), ("a", 3.0, 2, 2), ("b", math.nan, 1, 0)]
    )
    by_key = {row[1]: row for row in latest}
    assert by_key["a"][2:5] == (2, 2, 3.0)
    assert by_key["b"][4:] == (0.0, True)
