"""``/api/v1/logs`` on a real ``opsloop server``: batches in (JSON and plain text), bad
lines rejected by index, bad batches refused whole, templates, counts, sessions and
anomalies read back."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.server.conftest import Server

T0 = 1_700_000_040_000
MIN = 60_000


def _src() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def test_json_batch_templates_counts_and_sessions(server: Server) -> None:
    src = _src()
    lines = [
        {"line": f"GET /items/{i} 200 in {i % 7} ms request_id=r{i // 2}", "time": T0 + i * 100}
        for i in range(40)
    ]
    r = httpx.post(f"{server.url}/api/v1/logs", json={"source": src, "lines": lines})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 40 and body["rejected"] == [] and body["new_templates"] == [1]
    r = httpx.get(f"{server.url}/api/v1/logs/{src}/templates")
    (t,) = r.json()["items"]
    assert t["count"] == 40 and t["template"] == "GET <*> in <*> request_id=<*>"
    assert t["example"] == lines[0]["line"]
    r = httpx.get(f"{server.url}/api/v1/logs/{src}/counts", params={"template_id": 1})
    assert r.json()["items"] == [{"window_start": T0, "template_id": 1, "count": 40}]
    r = httpx.get(f"{server.url}/api/v1/logs/{src}/sessions/r3")
    assert r.json()["lines"] == 2 and r.json()["sequence"] == [1, 1]
    r = httpx.get(f"{server.url}/api/v1/logs/sources")
    mine = [s for s in r.json()["items"] if s["source"] == src]
    assert mine[0]["lines"] == 40 and mine[0]["templates"] == 1


def test_bad_lines_are_rejected_by_index_and_the_rest_stored(server: Server) -> None:
    src = _src()
    batch = {
        "source": src,
        "time": T0,
        "lines": [
            "worker 1 started",
            "",
            "\u0000\u0001\u0002",
            42,
            {"line": "worker 2 started", "time": "later"},
            {"text": "wrong key"},
            "x" * 100_000,
            "worker 3 started",
        ],
    }
    r = httpx.post(f"{server.url}/api/v1/logs", json=batch)
    assert r.status_code == 200, r.text
    body = r.json()
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert reasons[1] == "empty" and reasons[2].startswith("binary")
    assert reasons[3].startswith("not a line") and reasons[5].startswith("not a line")
    assert "milliseconds" in reasons[4]
    assert [w["index"] for w in body["warnings"]] == [6]
    assert body["accepted"] == 3


def test_plain_text_batches_in_any_encoding(server: Server) -> None:
    src = _src()
    raw = b"caf\xe9 opened\n\x00\x00binary\n\ncaf\xc3\xa9 opened\r\n"
    r = httpx.post(
        f"{server.url}/api/v1/logs",
        params={"source": src, "time": T0},
        content=raw,
        headers={"content-type": "text/plain; charset=latin-1"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert {x["index"]: x["reason"][:6] for x in body["rejected"]} == {1: "binary", 2: "empty"}
    assert "not valid UTF-8" in body["warnings"][0]["warning"]


def test_bad_batches_are_refused_whole(server: Server) -> None:
    url = f"{server.url}/api/v1/logs"
    cases = [
        (
            httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}),
            "not JSON",
        ),
        (httpx.post(url, json={"lines": ["x"]}), "needs a source"),
        (httpx.post(url, json={"source": "a/b", "lines": ["x"]}), "not a valid name"),
        (httpx.post(url, json={"source": "ok", "lines": "x"}), "must be a list"),
        (httpx.post(url, json={"source": "ok", "lines": [], "extra": 1}), "unknown field"),
        (
            httpx.post(url, json={"source": "ok", "lines": ["x"], "session_pattern": "("}),
            "not a valid regular expression",
        ),
        (httpx.post(url, content=b"x", headers={"content-type": "text/plain"}), "?source="),
        (httpx.post(url, content=b"x", headers={"content-type": "image/png"}), "not taken"),
    ]
    for r, words in cases:
        assert r.status_code == 400, r.text
        body = r.json()
        assert set(body) == {"error_code", "message"}
        assert words in body["message"], body
    r = httpx.get(f"{server.url}/api/v1/logs/sources")
    assert "ok" not in {s["source"] for s in r.json()["items"]}
    r = httpx.get(f"{server.url}/api/v1/logs/nope-{uuid.uuid4().hex[:6]}/templates")
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_a_new_template_after_warm_up_is_an_anomaly(server: Server) -> None:
    src = _src()
    url = f"{server.url}/api/v1/logs"
    # Eleven minutes of one kind of line (the default warm-up: 10 minutes, 1000 lines).
    lines = [
        {"line": f"heartbeat {i} from node-{i % 5} ok", "time": T0 + i * 600} for i in range(1100)
    ]
    r = httpx.post(url, json={"source": src, "lines": lines})
    assert r.json()["events"] == []
    later = T0 + 1100 * 600
    r = httpx.post(
        url,
        json={"source": src, "lines": [{"line": "ERROR disk /dev/sda1 failed", "time": later}]},
    )
    body = r.json()
    assert body["new_templates"] == [2] and len(body["events"]) == 1
    r = httpx.get(f"{server.url}/api/v1/logs/anomalies", params={"source": src})
    (e,) = r.json()["items"]
    assert e["kind"] == "log.anomaly" and e["subject"] == src
    assert e["payload"]["detector"] == "new_template"
    assert e["payload"]["template"] == "ERROR disk <*> failed"
    r = httpx.get(f"{server.url}/api/v1/events", params={"kind": "log.anomaly", "subject": src})
    assert [x["event_id"] for x in r.json()["items"]] == body["events"]


def test_cli_ingest_and_reads_through_a_server(server: Server, tmp_path: Path) -> None:
    src = _src()
    log = tmp_path / "app.log"
    log.write_bytes(
        b"2024-01-02 03:04:05,000 INFO job 1 done\n\n2024-01-02 03:04:06,000 INFO job 2 done\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_HOME"] = str(tmp_path / "nowhere")  # nothing goes to a local store

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "opsloop", "logs", *args, "--server", server.url],
            capture_output=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode() + done.stderr.decode()

    out = run("ingest", str(log), "--source", src)
    assert f"3 lines to {src} in {server.url}: 2 accepted, 1 rejected" in out
    assert "line 2: rejected: empty" in out
    out = run("templates", src)
    assert "<*> INFO job <*> done" in out
    assert run("anomalies", "--source", src).strip().endswith("0 anomalies")
    assert not (tmp_path / "nowhere").exists()


def test_cli_tail_sends_to_a_server(server: Server, tmp_path: Path) -> None:
    import time

    src = _src()
    log = tmp_path / "live.log"
    log.write_bytes(b"order 0 shipped\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSLOOP_")}
    env["OPSLOOP_HOME"] = str(tmp_path / "nowhere")
    args = ["tail", str(log), "-s", src, "--server", server.url, "--from-start"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsloop", "logs", *args, "--poll", "0.05", "--flush", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            r = httpx.get(f"{server.url}/api/v1/logs/sources")
            found = [s["lines"] for s in r.json()["items"] if s["source"] == src]
            if found and found[0] == n:
                return
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{n} lines did not reach the server"
            time.sleep(0.05)

    try:
        wait_for(1)
        with log.open("ab") as f:  # appended while tail runs
            f.write(b"order 1 shipped\norder 2 shipped\n")
        wait_for(3)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert f"in {server.url}: 3 accepted".encode() in out, out + err
