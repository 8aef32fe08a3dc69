"""Properties of the miner on arbitrary text: it never fails, and its store is coherent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from opsloop.aiops.logs import TemplateMiner

WORDS = st.sampled_from(
    ["open", "close", "user", "root", "[main]", "[a b]", "(x)", "<*>", "=", "a=b", "é", "中"]
)
TOKENS = st.one_of(WORDS, st.integers(-(10**6), 10**6).map(str), st.text(max_size=6))
LINES = st.lists(TOKENS, max_size=12).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=40))
def test_any_lines_are_filed_and_the_store_stays_coherent(lines: list[str]) -> None:
    miner = TemplateMiner()
    ids = []
    for line in lines:
        t = miner.add(line)
        ids.append(t.id)
        assert isinstance(miner.parameters(line, t), list)
    live = {t.id for t in miner.templates}
    assert {miner.resolve(i) for i in ids} <= live
    assert sum(t.count for t in miner.templates) == len(lines)
    # Every line, asked again without learning, finds a live template.
    for line in lines:
        m = miner.match(line)
        assert m is None or m.id in live
    again = TemplateMiner.from_dict(miner.to_dict())
    assert [(t.id, t.tokens, t.count) for t in again.templates] == [
        (t.id, t.tokens, t.count) for t in miner.templates
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(LINES, min_size=1, max_size=30), st.lists(LINES, min_size=1, max_size=30))
def test_merge_maps_every_id_to_a_live_template_and_keeps_counts(
    a_lines: list[str], b_lines: list[str]
) -> None:
    a, b = TemplateMiner(), TemplateMiner()
    b_ids = [b.add(x).id for x in b_lines]
    for x in a_lines:
        a.add(x)
    mapping = a.merge(b)
    live = {t.id for t in a.templates}
    assert {mapping[i] for i in b_ids} <= live
    assert sum(t.count for t in a.templates) == len(a_lines) + len(b_lines)
