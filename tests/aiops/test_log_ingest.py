"""Log ingestion into the store: templates, counts per window, sessions, bad lines,
persistence across restarts, merges, and two processes on one store."""

from __future__ import annotations

from typing import Any

import pytest

from opsloop.aiops.logs.ingest import MAX_BATCH, LogConfig, LogIngestor
from opsloop.aiops.logs.queries import (
    get_session,
    get_template,
    list_sessions,
    list_sources,
    list_templates,
    template_counts,
)
from opsloop.errors import InvalidInput, NotFound

T0 = 1_700_000_040_000  # a window start (minutes)


def _lines(n: int, start: int = T0, step: int = 1000) -> list[tuple[int | None, str | bytes]]:
    out: list[tuple[int | None, str | bytes]] = []
    for i in range(n):
        blk = f"blk_{1000 + i // 3}"
        kind = i % 3
        if kind == 0:
            text = f"Receiving block {blk} src: /10.0.0.{i % 7}:50010"
        elif kind == 1:
            text = f"Received block {blk} of size {6000 + i} from /10.0.0.{i % 5}"
        else:
            text = f"PacketResponder {i % 3} for block {blk} terminating"
        out.append((start + i * step, text))
    return out


def test_ingest_counts_templates_windows_and_sessions(store: Any) -> None:
    ing = LogIngestor(store)
    res = ing.ingest("hdfs", _lines(120))
    assert res.accepted == 120 and not res.rejected
    assert res.new_templates == [1, 2, 3]
    templates = list_templates(store.db, "hdfs", order="count")
    assert [t.count for t in templates] == [40, 40, 40]
    texts = {t.template for t in templates}
    assert "Receiving block <*> src: <*>" in texts
    first = get_template(store.db, "hdfs", 1)
    assert first.example == "Receiving block blk_1000 src: /10.0.0.0:50010"
    assert first.last_example.startswith("Receiving block blk_1039")
    # 120 lines a second apart: two whole minutes, 20 lines of each template in each.
    rows = template_counts(store.db, "hdfs", 1)
    assert rows == [(T0, 1, 20), (T0 + 60_000, 1, 20)]
    assert len(template_counts(store.db, "hdfs")) == 6
    # Sessions from the block ids, with their templates in order.
    s = get_session(store.db, "hdfs", "blk_1000")
    assert s.lines == 3 and s.sequence == [1, 2, 3]
    assert s.templates == {1: 1, 2: 1, 3: 1}
    assert len(list_sessions(store.db, "hdfs", limit=100)) == 40
    (src,) = list_sources(store.db)
    assert (src.source, src.lines, src.templates, src.first_time) == ("hdfs", 120, 3, T0)


def test_sessions_continue_across_batches(store: Any) -> None:
    ing = LogIngestor(store)
    lines = _lines(9)
    ing.ingest("hdfs", lines[:4])
    ing.ingest("hdfs", lines[4:])
    s = get_session(store.db, "hdfs", "blk_1001")
    assert s.sequence == [1, 2, 3] and s.lines == 3
    with pytest.raises(NotFound):
        get_session(store.db, "hdfs", "blk_9")


def test_custom_session_pattern_is_kept_and_checked(store: Any) -> None:
    ing = LogIngestor(store)
    ing.ingest("app", [(T0, "login user=alice ok")], session_pattern=r"user=(\w+)")
    ing.ingest("app", [(T0 + 1, "logout user=alice")])
    assert get_session(store.db, "app", "alice").lines == 2
    assert list_sources(store.db)[0].session_pattern == r"user=(\w+)"
    with pytest.raises(InvalidInput, match="not a valid regular expression"):
        ing.ingest("app", [(T0, "x")], session_pattern="(")


def test_bad_lines_are_rejected_one_at_a_time(store: Any) -> None:
    ing = LogIngestor(store, LogConfig())
    batch: list[Any] = [
        (T0, "ok line number 1"),
        (T0, ""),
        (T0, b"\x00\x01\x02binary"),
        (T0, "x" * (1 << 20)),
        (T0, "caf\xe9 latin-1".encode("latin-1")),
        (T0, "\ufeffutf-16 line".encode("utf-16")),
        (T0, 42),
        (-5, "negative time"),
        ("soon", "text time"),
        (None, "no time: now"),
        (T0, "ok line number 2"),
        (T0 + 2 * 86_400_000, "a line from the day after tomorrow"),
    ]
    res = ing.ingest("mixed", batch, now=T0 + 5)
    reasons = dict(res.rejected)
    assert sorted(reasons) == [1, 2, 6, 7, 8, 11]
    assert "ahead of the clock" in reasons[11]
    assert reasons[1] == "empty"
    assert reasons[2].startswith("binary")
    assert "not text" in reasons[6]
    assert "milliseconds" in reasons[7]
    warnings = dict(res.warnings)
    assert "cut to" in warnings[3]
    assert "not valid UTF-8" in warnings[4]
    assert res.accepted == 6
    (src,) = list_sources(store.db)
    assert (src.lines, src.bad_lines) == (6, 6)
    # A cut line's example is cut too.
    longest = max(list_templates(store.db, "mixed"), key=lambda t: len(t.example))
    assert len(longest.example) <= 2000


def test_bad_batches_store_nothing(store: Any) -> None:
    ing = LogIngestor(store)
    with pytest.raises(InvalidInput, match="not a valid name"):
        ing.ingest("a/b", [(T0, "x")])
    with pytest.raises(InvalidInput, match="at most"):
        ing.ingest("big", ((T0, "x") for _ in range(MAX_BATCH + 1)))
    assert list_sources(store.db) == []


def test_templates_persist_across_restarts(store: Any) -> None:
    LogIngestor(store).ingest("hdfs", _lines(30))
    again = LogIngestor(store)  # a new process: the miner comes from the store
    res = again.ingest("hdfs", _lines(30, start=T0 + 3_600_000))
    assert res.new_templates == []
    assert [t.count for t in list_templates(store.db, "hdfs")] == [20, 20, 20]


def test_two_processes_on_one_store_agree(store: Any) -> None:
    a, b = LogIngestor(store), LogIngestor(store)
    a.ingest("svc", [(T0, "worker started on host alpha")])
    r = b.ingest("svc", [(T0 + 1, "disk full on /dev/sda1")])
    assert r.new_templates == [2]
    r = a.ingest("svc", [(T0 + 2, "disk full on /dev/sdb1")])
    assert r.new_templates == []  # a reloaded what b learned
    assert [t.count for t in list_templates(store.db, "svc")] == [1, 2]


def test_merged_templates_move_their_counts(store: Any) -> None:
    ing = LogIngestor(store)
    for i, user in enumerate(["root", "alice", "bob", "carol"]):
        ing.ingest("auth", [(T0 + i * 60_000, f"session opened for user {user} by (uid={i})")])
    (t,) = list_templates(store.db, "auth")
    assert t.template == "session opened for user <*> by (uid=<*>)"
    assert t.count == 4 and t.template_id == 1
    assert get_template(store.db, "auth", 3).template_id == 1  # a merged id resolves
    assert [n for _, _, n in template_counts(store.db, "auth", 2)] == [1, 1, 1, 1]


def test_unknown_source_and_bad_queries(store: Any) -> None:
    with pytest.raises(NotFound, match="no log source"):
        list_templates(store.db, "nope")
    LogIngestor(store).ingest("x", [(T0, "hello world")])
    with pytest.raises(NotFound, match="no template 7"):
        get_template(store.db, "x", 7)
    with pytest.raises(InvalidInput, match="order is one of"):
        list_templates(store.db, "x", order="size")
    with pytest.raises(InvalidInput, match="limit"):
        list_templates(store.db, "x", limit=0)


def test_a_failed_batch_leaves_nothing_and_the_miner_is_reloaded(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ing = LogIngestor(store)
    ing.ingest("svc", [(T0, "worker started on host alpha")])

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk gone")

    # Fails inside the transaction, after the miner learned the batch's lines.
    monkeypatch.setattr(ing, "_sessions", broken)
    with pytest.raises(RuntimeError):
        ing.ingest("svc", [(T0 + 1, "disk full on /dev/sda1")])
    monkeypatch.undo()
    assert [t.count for t in list_templates(store.db, "svc")] == [1]
    assert list_sources(store.db)[0].lines == 1
    res = ing.ingest("svc", [(T0 + 2, "disk full on /dev/sdb1")])
    assert res.new_templates == [2]  # new again: the failed batch taught nothing


@pytest.mark.parametrize(
    ("line", "session"),
    [
        (
            "Receiving block blk_-1608999687919862906 src: /10.0.0.1:50010",
            "blk_-1608999687919862906",
        ),
        ("GET /api 200 request_id=ab12-cd trace_id=zz", "ab12-cd"),
        ('{"msg": "done", "traceId": "4bf92f35"}', "4bf92f35"),
        (
            "Container container_1445087491445_0005_01_000010 exited",
            "container_1445087491445_0005_01_000010",
        ),
        (
            "req-9f8e7d6c-1111-2222-3333-444455556666 GET /v2/servers",
            "9f8e7d6c-1111-2222-3333-444455556666",
        ),
        (
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        ("plain line with valid=3 and no id", None),
    ],
)
def test_default_session_ids(line: str, session: str | None) -> None:
    from opsloop.aiops.logs.sessions import SessionPattern

    assert SessionPattern().find(line) == session
