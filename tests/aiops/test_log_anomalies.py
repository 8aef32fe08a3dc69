"""The log anomaly detectors, through ingestion: new templates after warm-up, rate
changes of known templates, unusual sequences in sessions — each one deduplicated
``log.anomaly`` event per burst."""

from __future__ import annotations

import random
from typing import Any

import pytest
from scipy import stats

from opsloop.aiops.logs.anomaly import TransitionModel, rate_change, tail_probabilities
from opsloop.aiops.logs.ingest import LogConfig, LogIngestor
from opsloop.aiops.logs.queries import list_sessions
from opsloop.store.events import list_events

T0 = 1_700_000_040_000
MIN = 60_000
CFG = LogConfig(warmup_ms=5 * MIN, warmup_lines=100, cooldown_ms=5 * MIN)


def _events(store: Any, detector: str) -> list[Any]:
    return [
        e for e in list_events(store.db, kind="log.anomaly") if e.payload["detector"] == detector
    ]


def _steady(minute: int, per_minute: int = 20) -> list[tuple[int | None, str | bytes]]:
    step = MIN // per_minute
    return [
        (T0 + minute * MIN + i * step, f"request {minute * 100 + i} served in {i % 9} ms")
        for i in range(per_minute)
    ]


# -- arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(("x", "mean", "var"), [(0, 3.0, 3.0), (7, 3.0, 3.0), (25, 4.0, 12.0)])
def test_tail_probabilities_match_scipy(x: int, mean: float, var: float) -> None:
    up, down = tail_probabilities(x, mean, var)
    if var > mean:
        p = mean / var
        dist = stats.nbinom(mean * p / (1 - p), p)
    else:
        dist = stats.poisson(mean)
    assert up == pytest.approx(dist.sf(x - 1), rel=1e-6)
    assert down == pytest.approx(dist.cdf(x), rel=1e-6)


def test_rate_change_needs_a_count_a_ratio_and_a_small_tail() -> None:
    steady = [20, 22, 18, 21, 19, 20, 23, 17, 20, 20]
    assert rate_change(21, steady).direction is None
    assert rate_change(80, steady).direction == "up"
    assert rate_change(0, steady).direction == "down"
    assert rate_change(5, [0] * 10).direction is None  # under min_count
    assert rate_change(12, [0] * 10).direction == "up"  # a quiet template bursts
    # A noisy history: the same count is no surprise.
    assert rate_change(60, [0, 50, 2, 45, 1, 60, 0, 55, 3, 40]).direction is None
    assert rate_change(10, []).direction is None


def test_transition_model_remaps_merged_templates() -> None:
    m = TransitionModel({(1, 2): 5, (1, 3): 5})
    m.remap({3: 2})
    assert m.probability(1, 2) == 1.0
    assert m.unusual(1, 9, min_support=5, rare=0.01) == 0.0
    assert m.unusual(1, 9, min_support=50, rare=0.01) is None


# -- new templates --------------------------------------------------------------------


def test_new_template_alerts_only_after_warm_up_and_once_per_burst(store: Any) -> None:
    ing = LogIngestor(store, CFG)
    # Warm-up: every line is new, nothing alerts.
    for minute in range(11):
        ing.ingest("web", _steady(minute))
        if minute < 5:
            ing.ingest("web", [(T0 + minute * MIN + 1, f"cache warmed stage {chr(97 + minute)}x")])
    assert _events(store, "new_template") == []
    # A burst of new error lines, of three new templates: one event.
    burst = [
        (T0 + 11 * MIN + i, text)
        for i, text in enumerate(
            ["ERROR disk full on /data/d1", "FATAL worker crashed", "panic: nil map write"] * 12
        )
    ]
    res = ing.ingest("web", burst + _steady(11))
    assert len(res.new_templates) == 3
    (e,) = _events(store, "new_template")
    assert e.subject == "web" and e.kind == "log.anomaly"
    assert e.payload["new_templates"] == 3
    assert e.payload["templates"][0]["template"] == "ERROR disk full on <*>"
    assert e.payload["templates"][0]["count"] == 12
    assert e.payload["window_start"] == T0 + 11 * MIN
    # More new ones within the cooldown: no event now, counted in the next one.
    ing.ingest("web", [(T0 + 12 * MIN, "segfault in module alpha"), *_steady(12)])
    assert len(_events(store, "new_template")) == 1
    for minute in range(13, 17):
        ing.ingest("web", _steady(minute))
    ing.ingest("web", [(T0 + 17 * MIN, "certificate expired for example.org"), *_steady(17)])
    events = _events(store, "new_template")
    assert len(events) == 2 and events[1].payload["suppressed_before"] == 1
    # The burst's window has closed: a new template's lines are not a rate change too.
    assert _events(store, "rate") == []


# -- rate changes ---------------------------------------------------------------------


def test_rate_rise_raises_one_event_until_the_rate_is_normal_again(store: Any) -> None:
    ing = LogIngestor(store, CFG)
    for minute in range(20):
        ing.ingest("api", _steady(minute))
    assert _events(store, "rate") == []
    for minute in range(20, 24):  # four windows at ten times the rate: one event
        ing.ingest("api", _steady(minute, per_minute=200))
    for minute in range(24, 40):
        ing.ingest("api", _steady(minute))
    (e,) = _events(store, "rate")
    assert e.payload["direction"] == "up"
    assert e.payload["window_start"] == T0 + 20 * MIN
    assert e.payload["count"] == 200 and 15 < e.payload["expected"] < 25
    assert e.payload["template"] == "request <*> served in <*>"
    assert e.payload["p_value"] < 1e-4


def test_a_source_that_goes_quiet_is_a_rate_drop(store: Any) -> None:
    ing = LogIngestor(store, CFG)
    for minute in range(20):
        ing.ingest("api", _steady(minute), now=T0 + minute * MIN + MIN)
    # No more lines: windows close as time passes.
    closed = ing.close_windows(now=T0 + 25 * MIN)
    assert closed >= 3
    (e,) = _events(store, "rate")
    assert e.payload["direction"] == "down" and e.payload["count"] == 0
    assert ing.close_windows(now=T0 + 26 * MIN) == 1
    assert len(_events(store, "rate")) == 1  # still down: not again


# -- sequences ------------------------------------------------------------------------

NORMAL = [
    ["open {s} for user {u}", "read {n} bytes from {s}", "close {s} after {n} ms"],
    ["open {s} for user {u}", "write {n} bytes to {s}", "close {s} after {n} ms"],
    [
        "open {s} for user {u}",
        "read {n} bytes from {s}",
        "write {n} bytes to {s}",
        "close {s} after {n} ms",
    ],
]
ANOMALOUS = [
    ["open {s} for user {u}", "close {s} after {n} ms"],  # nothing read or written
    ["open {s} for user {u}", "read {n} bytes from {s}", "checksum mismatch in {s}"],
    ["read {n} bytes from {s}", "close {s} after {n} ms"],  # never opened
]


def _sessions(n_normal: int, n_bad: int, seed: int) -> tuple[list[Any], set[str]]:
    """Interleaved sessions (ids ``req-...``), their lines spread over 30 minutes."""
    rng = random.Random(seed)
    kinds = [("ok", rng.choice(NORMAL)) for _ in range(n_normal)]
    kinds += [("bad", rng.choice(ANOMALOUS)) for _ in range(n_bad)]
    # The anomalies come after the first third: the model learns on normal sessions first.
    head, tail = kinds[: n_normal // 3], kinds[n_normal // 3 :]
    rng.shuffle(tail)
    events: list[tuple[int, int, str]] = []
    bad: set[str] = set()
    for k, (label, steps) in enumerate(head + tail):
        sid = f"request_id={k:05d}"
        if label == "bad":
            bad.add(f"{k:05d}")
        start = T0 + k * 30 * MIN // len(kinds)
        for j, step in enumerate(steps):
            text = step.format(s=f"/srv/f{k}", u=rng.choice(["ann", "bob", "cy"]), n=k + j)
            events.append((start + j * 200, k, f"{text} {sid}"))
    events.sort()
    return [(t, text) for t, _, text in events], bad


def test_unusual_sequences_are_found_in_synthetic_sessions(store: Any) -> None:
    ing = LogIngestor(store, CFG)
    # 15 unusual sessions in 1500 (1%): the model learns online, so a pattern that
    # makes up more than ``seq_rare`` of its template's transitions becomes usual.
    lines, bad = _sessions(1500, 15, seed=7)
    for i in range(0, len(lines), 400):
        ing.ingest("files", lines[i : i + 400])
    flagged = {s.session_id for s in list_sessions(store.db, "files", flagged=True, limit=5000)}
    hits = len(flagged & bad)
    false = len(flagged - bad)
    recall, fp_rate = hits / len(bad), false / 1500
    assert recall >= 0.9, (recall, fp_rate)
    assert fp_rate <= 0.01, (recall, fp_rate)
    # One event per unusual transition (within the cooldown), listing its sessions.
    events = _events(store, "sequence")
    assert 1 <= len(events) <= 3 * 7
    assert sum(e.payload["n_sessions"] for e in events) <= hits
    e = events[0]
    assert {"prev_template", "template", "probability", "session_id", "sessions"} <= set(e.payload)


def test_the_servers_window_closer_judges_a_quiet_source(store: Any) -> None:
    import time

    from opsloop.aiops.logs import ingest as ingest_mod
    from opsloop.aiops.logs.queries import list_sources
    from opsloop.aiops.logs.service import LogWindowCloser
    from opsloop.core.ids import now_ms

    # Twenty busy minutes that ended five minutes ago (wall clock), then nothing.
    start = now_ms() // MIN * MIN - 25 * MIN
    ing = ingest_mod.ingestor_for(store)
    for minute in range(20):
        ing.ingest(
            "quiet",
            [(start + minute * MIN + i * 3000, f"tick {i} ok") for i in range(20)],
            now=start + 20 * MIN,
        )
    before = list_sources(store.db)[0].closed_until
    closer = LogWindowCloser(store, interval=0.05)
    closer.start()
    try:
        deadline = time.monotonic() + 30
        while not _events(store, "rate"):
            assert time.monotonic() < deadline, "no rate event"
            time.sleep(0.05)
    finally:
        closer.stop()
    assert list_sources(store.db)[0].closed_until > before
    (e,) = _events(store, "rate")
    assert e.payload["direction"] == "down"


@pytest.mark.parametrize(
    "name",
    ["opsloop.aiops.logs.anomaly", "opsloop.aiops.logs.sessions", "opsloop.aiops.logs.timestamps"],
)
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_a_replayed_file_is_not_judged_by_the_clock(store: Any) -> None:
    from opsloop.aiops.logs.queries import list_sources

    ing = LogIngestor(store, CFG)
    for minute in range(20):  # lines of 2023, ingested a year later
        ing.ingest("old", _steady(minute), now=T0 + 365 * 1440 * MIN)
    before = list_sources(store.db)[0].closed_until
    assert ing.close_windows(now=T0 + 366 * 1440 * MIN) == 0
    assert list_sources(store.db)[0].closed_until == before
    assert _events(store, "rate") == []
