"""The template store: save and load, the blob store, merging two miners."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsloop.aiops.logs import (
    TemplateMiner,
    load_miner,
    load_miner_blob,
    save_miner,
    save_miner_blob,
)
from opsloop.errors import InvalidInput
from opsloop.store.blobs import BlobStore
from tests.aiops.synth import synthetic_log


def test_round_trip_keeps_templates_ids_and_counts(tmp_path: Path) -> None:
    lines, _ = synthetic_log(1000)
    miner = TemplateMiner()
    first = [t.id for t in miner.add_many(lines[:500])]
    save_miner(miner, tmp_path / "t.json")
    again = load_miner(tmp_path / "t.json")
    assert [(t.id, t.template, t.count) for t in again.templates] == [
        (t.id, t.template, t.count) for t in miner.templates
    ]
    # A restarted miner files the next lines exactly as the one that kept running.
    assert [t.id for t in again.add_many(lines[500:])] == [
        t.id for t in miner.add_many(lines[500:])
    ]
    assert set(first) <= {t.id for t in again.templates} | set(again._alias)


def test_missing_file_is_an_empty_store_and_junk_is_refused(tmp_path: Path) -> None:
    assert len(load_miner(tmp_path / "none.json")) == 0
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInput):
        load_miner(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(InvalidInput):
        load_miner(tmp_path / "other.json")


def test_blob_store_round_trip(tmp_path: Path) -> None:
    blobs = BlobStore(str(tmp_path / "artifacts"))
    miner = TemplateMiner()
    miner.add("Connection from 10.0.0.1 closed")
    sha = save_miner_blob(miner, blobs)
    assert save_miner_blob(miner, blobs) == sha  # content-addressed
    assert [t.template for t in load_miner_blob(blobs, sha).templates] == [
        "Connection from <*> closed"
    ]


def test_merge_combines_same_templates_and_remaps_new_ones() -> None:
    a, b = TemplateMiner(), TemplateMiner()
    a.add("Connection from 10.0.0.1 closed")
    a.add("disk /dev/sda1 is 91% full")
    b.add("user alice logged in at 10:00")  # new to a
    b.add("Connection from 10.0.0.9 closed")  # the same as a's 1
    b.add("Connection from 10.0.0.8 closed")
    before = {t.id: t.template for t in a.templates}
    mapping = a.merge(b)
    assert mapping == {1: 3, 2: 1}
    assert {t.id: t.template for t in a.templates if t.id in before} == before
    assert a.get(1) is not None and a.get(1).count == 3  # type: ignore[union-attr]
    assert a.get(3) is not None and a.get(3).template == "user alice logged in at <*>"  # type: ignore[union-attr]
    # The merged store files b's lines under the mapped ids.
    assert a.add("user alice logged in at 11:30").id == 3
    assert a.add("Connection from 1.2.3.4 closed").id == 1


def test_merge_of_two_halves_equals_one_pass_grouping() -> None:
    lines, _ = synthetic_log(2000)
    whole = TemplateMiner()
    list(whole.add_many(lines))
    a, b = TemplateMiner(), TemplateMiner()
    list(a.add_many(lines[:1000]))
    list(b.add_many(lines[1000:]))
    a.merge(b)
    assert sorted(t.template for t in a.templates) == sorted(t.template for t in whole.templates)
    assert sum(t.count for t in a.templates) == 2000


def test_malformed_store_is_refused_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(
        '{"format": "opsloop.log-templates/1", "templates": [{"id": 1}]}'
    )
    with pytest.raises(InvalidInput, match="malformed"):
        load_miner(tmp_path / "m.json")


def test_header_evidence_survives_a_restart(tmp_path: Path) -> None:
    miner = TemplateMiner()
    for i in range(30):
        level = ["INFO", "WARN", "DEBUG"][i % 3]
        miner.add(f"10:00:{i:02} {level} message number {['one', 'two', 'three'][i % 3]} x")
    save_miner(miner, tmp_path / "t.json")
    again = load_miner(tmp_path / "t.json")
    assert all(again._pdf[k] == n for k, n in miner._pdf.items() if n >= 2)
    line = "10:01:00 ERROR message number two x"
    assert again.add(line).template == miner.add(line).template
