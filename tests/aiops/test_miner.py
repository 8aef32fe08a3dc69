"""The template miner: masking, grouping, streaming order, parameters, bounded memory."""

from __future__ import annotations

import pytest

from opsloop.aiops.logs import MinerConfig, TemplateMiner
from opsloop.aiops.logs.tokens import mask, tokens
from tests.aiops.synth import SOURCES, grouping_accuracy, synthetic_log


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Connection from 10.0.0.1:22 closed", "Connection from <*> closed"),
        ("pid=4242 uuid=123e4567-e89b-12d3-a456-426614174000", "pid=<*> uuid=<*>"),
        ("read 0x7fff5fbff8c8 (4096 bytes)", "read <*> (<*> bytes)"),
        ("open /var/log/app.log failed", "open <*> failed"),
        (r"Loaded C:\Windows\System\cbs.dll, ok", "Loaded <*>, ok"),
        (
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: ok",
            "<*> <*> <*> combo sshd(pam_unix)[<*>]: ok",
        ),
        ("block blk_-1608999687919862906 of node-17", "block <*> of <*>"),
        ("plain words only", "plain words only"),
        ("stored 4.0 KB, free 317.5 MB) in 20 ms", "stored <*>, free <*>) in <*>"),
    ],
)
def test_masking_is_generic(line: str, masked: str) -> None:
    assert mask(line) == masked


def test_tokens_glue_brackets_and_collapse_parameter_runs() -> None:
    assert tokens(mask("2015-10-18 18:01:47,978 INFO [IPC Server handler 5 on 62270] a: b")) == [
        "<*>",
        "INFO",
        "[IPC Server handler <*> on <*>]",
        "a:",
        "b",
    ]


def test_groups_a_multi_source_log_exactly() -> None:
    lines, truth = synthetic_log(3000)
    miner = TemplateMiner()
    ids = [t.id for t in miner.add_many(lines)]
    assert grouping_accuracy([miner.resolve(i) for i in ids], truth) == 1.0
    assert len(miner) == len(SOURCES)
    tpls = {t.template for t in miner.templates}
    assert "cache miss key=<*> loaded in <*>" in tpls  # "12.5 ms": a number and its unit
    assert "<*> sshd[<*>]: Connection closed by <*> [preauth]" in tpls


def test_streaming_keeps_input_order_and_counts() -> None:
    miner = TemplateMiner()
    lines = [
        "Connection from 10.0.0.1 closed",
        "user alice logged in",
        "Connection from 10.0.0.2 closed",
        "disk /dev/sda1 is 91% full",
    ]
    got = [(t.id, t.template) for t in miner.add_many(lines)]
    assert got == [
        (1, "Connection from <*> closed"),
        (2, "user alice logged in"),
        (1, "Connection from <*> closed"),
        (3, "disk <*> is <*> full"),
    ]
    assert [t.count for t in miner.templates] == [2, 1, 1]
    # add() and add_many() agree
    other = TemplateMiner()
    assert [other.add(x).id for x in lines] == [1, 2, 1, 3]


def test_word_variables_generalise_after_enough_values_few_values_stay_apart() -> None:
    miner = TemplateMiner()
    for user in ["root", "alice", "bob", "carol", "dave"]:
        miner.add(f"session opened for user {user} by sshd")
    for word in ["startup", "shutdown"] * 3:
        miner.add(f"cupsd {word} succeeded after init")
    tpls = sorted(t.template for t in miner.templates)
    assert "session opened for user <*> by sshd" in tpls
    assert "cupsd startup succeeded after init" in tpls
    assert "cupsd shutdown succeeded after init" in tpls
    # every line of the user template resolves to the one merged id
    assert len({miner.resolve(i) for i in range(1, 4)}) == 1


def test_parameters() -> None:
    miner = TemplateMiner()
    p = miner.parse("session opened for user root by (uid=0)")
    assert p.template == "session opened for user root by (uid=<*>)"
    assert p.parameters == ["0"]
    p = miner.parse("Connection from 10.0.0.1 port 22 closed")
    assert p.parameters == ["10.0.0.1", "22"]
    p = miner.parse("IRQs 3 4 5 7 routed")
    assert p.template == "IRQs <*> routed"
    assert p.parameters == ["3 4 5 7"]


def test_match_does_not_learn() -> None:
    miner = TemplateMiner()
    miner.add("Connection from 10.0.0.1 closed")
    t = miner.match("Connection from 10.9.9.9 closed")
    assert t is not None and t.count == 1
    assert miner.match("something else entirely") is None
    assert len(miner) == 1


def test_memory_stays_bounded() -> None:
    miner = TemplateMiner(MinerConfig(cache_size=64))
    for i in range(5000):
        miner.add(f"job j{i % 997}x finished in {i} ms on host h{i % 13}")
        miner.add(f"request {i} from user u{i}q took {i % 100} ms")
    assert len(miner._cache) <= 64 and len(miner._keys) <= 64
    assert len(miner) <= 4


def test_odd_text_does_not_break_the_miner() -> None:
    miner = TemplateMiner()
    for line in ["", " ", "\t", "x" * 1_000_000, "[" * 5000, "a[ b" * 20000, "é ü 中文 🙂", "<*>"]:
        t = miner.add(line)
        assert isinstance(t.template, str)


def test_header_fields_vary_without_a_format() -> None:
    # Levels, threads and components that many templates share in one place are
    # header fields: a message logged under another one is the same event.
    miner = TemplateMiner()
    msgs = ["starting job", "job finished cleanly", "queue drained now", "cache warmed up"]
    for i in range(40):
        level = ["INFO", "WARN", "DEBUG"][i % 3]
        thread = ["[main]", "[pool-1 worker 7]", "[scheduler]"][i % 3]
        miner.add(f"2024-01-0{i % 9 + 1} 10:00:{i:02} {level} {thread} {msgs[i % 4]}")
    tpls = sorted(t.template for t in miner.templates)
    assert tpls == [f"<*> <*> <*> {m}" for m in sorted(msgs)]


def test_variants_fuse_into_the_oldest_template_in_any_order() -> None:
    users = ["root", "alice", "bob", "carol", "dave", "erin"]
    for order in (users, users[::-1]):
        miner = TemplateMiner()
        ids = [miner.add(f"session closed for user {u} on tty").id for u in order]
        assert {miner.resolve(i) for i in ids} == {1}
        assert [t.template for t in miner.templates] == ["session closed for user <*> on tty"]
