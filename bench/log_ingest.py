"""Log ingestion through the real HTTP API: ``POST /api/v1/logs`` on an ``opsloop server``,
on SQLite (the embedded store) and on PostgreSQL.

The lines are made here, seeded (no data files): 100,000 lines from a dozen made-up
services writing into one source, as a syslog aggregator would (sshd, an HTTP API,
an HDFS datanode, a Java worker pool, PostgreSQL, nginx, Kafka consumers, the kernel,
...), about 40 message shapes, each line with its own numbers, ids, IPs and
durations, and its time (ms) increasing over about an hour of log time. Request, block
and trace ids repeat over a few lines (the ingestor's sessions). About two thirds of
the way in, five minutes of an incident: upstream timeouts and errors at ten times
their rate, and an error shape seen nowhere else (which the detectors may flag).

For each store the script starts ``python -m opsloop.cli.main server`` with its own
temporary ``OPSLOOP_HOME`` (PostgreSQL: ``OPSLOOP_DATABASE_URL`` on a fresh schema of
its own, dropped at the end), waits for ``/health``, then POSTs the lines in batches
of ``--batch`` lines (JSON ``{"source", "lines": [{"line", "time"}, ...]}``) from one
``httpx.Client``, one request after the other. The bodies are encoded before the clock
starts; the time is from the first request to the last answer. Every answer must be a
200 and the accepted counts must add up to the lines sent (else the script fails).
Then it reads the source's totals (``/api/v1/logs/sources``), its templates
(``/api/v1/logs/{source}/templates``) and the ``log.anomaly`` events
(``/api/v1/logs/anomalies``).

Run: ``python bench/log_ingest.py [--lines N] [--batch N] [--seed N] [--pg URL | --no-pg]``
(PostgreSQL default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; when it does
not answer, its run is skipped and the reason printed). Prints each store's figures as
it goes, a table last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SOURCE = "bench-syslog"
T0 = 1_767_261_600_000  # 2026-01-01 10:00 UTC
SPAN_MS = 3_600_000  # about an hour of log time
INCIDENT = (0.65, 0.65 + 5 / 60)  # share of the hour: five minutes

# --- the lines ------------------------------------------------------------------------

USERS = ["alice", "bob", "carol", "deploy", "ubuntu", "git", "jenkins", "postgres", "admin"]
BAD_USERS = ["oracle", "test", "guest", "pi", "support", "user1", "ftpuser", "hadoop"]
ENDPOINTS = ["/items/{n}", "/users/{n}/profile", "/orders/{n}", "/search?q=w{n}"]


class Gen:
    """The running state of the made-up services: ids that repeat over a few lines."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        self.rid = 10_000
        self.blocks = [self._blk() for _ in range(40)]
        self.traces = [self._hex(32) for _ in range(20)]
        self.offsets = {p: rng.randint(10**6, 10**7) for p in range(12)}
        self.session = 4000

    def _blk(self) -> int:
        return self.r.randint(-(2**62), 2**62)

    def _hex(self, n: int) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def ip(self) -> str:
        r = self.r
        return f"{r.choice([10, 172, 192, 203])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def pid(self) -> int:
        return self.r.randint(300, 65_000)

    def port(self) -> int:
        return self.r.randint(1024, 65_535)

    def ms(self, mean: float = 40.0) -> int:
        return max(1, int(self.r.lognormvariate(0, 1) * mean))

    def request(self) -> str:
        if self.r.random() < 0.6:
            self.rid += self.r.randint(1, 3)
        return f"request_id=r{self.rid - self.r.randint(0, 2)}"

    def block(self) -> str:
        if self.r.random() < 0.25:
            self.blocks[self.r.randrange(len(self.blocks))] = self._blk()
        return f"blk_{self.r.choice(self.blocks)}"

    def trace(self) -> str:
        if self.r.random() < 0.2:
            self.traces[self.r.randrange(len(self.traces))] = self._hex(32)
        return self.r.choice(self.traces)

    def path(self) -> str:
        return self.r.choice(ENDPOINTS).format(n=self.r.randint(1, 99_999))

    def worker(self) -> str:
        return f"worker-{self.r.randint(1, 16)}"

    def uptime(self, t: int) -> str:
        s = (t - T0) / 1000 + 812_345.0
        return f"{s:12.6f}"


# (weight, weight during the incident, shape): a shape makes one line from the state
# and the line's time.
Shape = Callable[[Gen, int], str]


def _shapes() -> list[tuple[float, float, Shape]]:
    def hms(t: int) -> str:
        s = (t // 1000) % 86_400
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"

    return [
        # sshd
        (3, 3, lambda g, t: f"sshd[{g.pid()}]: Accepted password for {g.r.choice(USERS)} from {g.ip()} port {g.port()} ssh2"),
        (4, 4, lambda g, t: f"sshd[{g.pid()}]: Failed password for invalid user {g.r.choice(BAD_USERS)} from {g.ip()} port {g.port()} ssh2"),
        (3, 3, lambda g, t: f"sshd[{g.pid()}]: Connection closed by {g.ip()} port {g.port()} [preauth]"),
        (2, 2, lambda g, t: f"sshd[{g.pid()}]: pam_unix(sshd:session): session opened for user {g.r.choice(USERS)} by (uid=0)"),
        (2, 2, lambda g, t: f"sshd[{g.pid()}]: Received disconnect from {g.ip()} port {g.port()}:11: disconnected by user"),
        # an HTTP API
        (14, 10, lambda g, t: f"api: GET {g.path()} 200 in {g.ms(25)} ms {g.request()}"),
        (5, 4, lambda g, t: f"api: POST /orders 201 in {g.ms(60)} ms {g.request()}"),
        (2, 2, lambda g, t: f"api: GET {g.path()} 404 in {g.ms(5)} ms {g.request()}"),
        (2, 2, lambda g, t: f"api: PUT /carts/{uuid.UUID(int=g.r.getrandbits(128), version=4)} 200 in {g.ms(30)} ms {g.request()}"),
        (1, 3, lambda g, t: f"api: WARN slow query on orders took {g.ms(900)} ms {g.request()}"),
        (0.3, 12, lambda g, t: f"api: ERROR upstream payments timed out after {g.r.choice([3000, 5000, 10000])} ms {g.request()}"),
        (0.2, 4, lambda g, t: f"api: POST /payments 502 in {g.ms(4000)} ms {g.request()}"),
        # an HDFS datanode
        (8, 8, lambda g, t: f"dfs.DataNode$DataXceiver: Receiving block {g.block()} src: /{g.ip()}:{g.port()} dest: /{g.ip()}:50010"),
        (8, 8, lambda g, t: f"dfs.DataNode$PacketResponder: PacketResponder {g.r.randint(0, 2)} for block {g.block()} terminating"),
        (6, 6, lambda g, t: f"dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: {g.ip()}:50010 is added to {g.block()} size {g.r.randint(10**5, 67_108_864)}"),
        (3, 3, lambda g, t: f"dfs.DataNode: Block {g.block()} replicated to {g.r.randint(1, 3)} nodes"),
        (1, 1, lambda g, t: f"dfs.FSDataset: Deleting block {g.block()} file /data/dfs/current/subdir{g.r.randint(0, 63)}/{g.block()}"),
        # a Java worker pool
        (6, 6, lambda g, t: f"INFO [{g.worker()}] c.e.billing.InvoiceJob: took {g.ms(200)} ms for {g.r.randint(1, 500)} invoices"),
        (4, 4, lambda g, t: f"INFO [{g.worker()}] c.e.billing.InvoiceJob: batch {g.r.randint(1, 10**6)} committed"),
        (3, 3, lambda g, t: f"DEBUG [{g.worker()}] c.e.cache.LruCache: evicted {g.r.randint(1, 5000)} entries, size now {g.r.randint(10**4, 10**5)}"),
        (1, 4, lambda g, t: f"WARN [{g.worker()}] c.e.http.RetryPolicy: retry {g.r.randint(1, 5)} of 5 for https://partner.example.com/api/v2/rates"),
        (0.3, 2, lambda g, t: f"ERROR [{g.worker()}] c.e.billing.InvoiceJob: failed to render invoice {g.r.randint(1, 10**6)}: java.io.IOException: Broken pipe"),
        (0, 6, lambda g, t: f"ERROR [{g.worker()}] c.e.db.HikariPool: HikariPool-1 - Connection is not available, request timed out after {g.r.randint(30000, 30100)}ms"),
        (0.5, 0.5, lambda g, t: f"INFO [scheduler] c.e.sched.Cron: triggered job nightly-export-{g.r.randint(1, 9)} at {hms(t)}"),
        # PostgreSQL
        (4, 5, lambda g, t: f"postgres[{g.pid()}]: LOG:  duration: {g.ms(20)}.{g.r.randint(0, 999):03d} ms  statement: SELECT * FROM orders WHERE id = {g.r.randint(1, 10**7)}"),
        (0.3, 0.3, lambda g, t: f"postgres[{g.pid()}]: LOG:  checkpoint complete: wrote {g.r.randint(10, 9000)} buffers ({g.r.randint(0, 99)}.{g.r.randint(0, 9)}%)"),
        (0.5, 0.5, lambda g, t: f'postgres[{g.pid()}]: ERROR:  duplicate key value violates unique constraint "users_email_key"'),
        (2, 2, lambda g, t: f"postgres[{g.pid()}]: LOG:  connection authorized: user={g.r.choice(USERS)} database=app"),
        # nginx
        (8, 8, lambda g, t: f'{g.ip()} - - "GET /static/js/app.{g._hex(8)}.js HTTP/1.1" 200 {g.r.randint(1000, 400_000)} "-" "Mozilla/5.0"'),
        (3, 3, lambda g, t: f'{g.ip()} - - "GET /img/p/{g.r.randint(1, 99_999)}.webp HTTP/1.1" 304 0 "-" "Mozilla/5.0"'),
        (0.2, 6, lambda g, t: f"nginx: [error] {g.pid()}#0: *{g.r.randint(1, 10**7)} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {g.ip()}"),
        # Kafka consumers, traces
        (4, 4, lambda g, t: f"consumer-{g.r.randint(1, 8)}: committed offset {g.r.randint(10**6, 10**8)} for partition orders-{g.r.randint(0, 11)}"),
        (0.1, 0.5, lambda g, t: f"consumer-{g.r.randint(1, 8)}: rebalance started, generation {g.r.randint(1, 500)}"),
        (4, 3, lambda g, t: f'trace_id={g.trace()} span={g._hex(16)} service=checkout msg="cart priced" items={g.r.randint(1, 30)} total={g.r.randint(1, 99_999) / 100:.2f}'),
        (2, 2, lambda g, t: f'trace_id={g.trace()} span={g._hex(16)} service=checkout msg="stock reserved" sku=SKU-{g.r.randint(1000, 99_999)}'),
        # the system
        (1, 1, lambda g, t: f"systemd[1]: Started Session {g.r.randint(1, 9999)} of user {g.r.choice(USERS)}."),
        (0.5, 0.5, lambda g, t: f"CRON[{g.pid()}]: (root) CMD (/usr/local/bin/backup.sh --incremental --since {hms(t)})"),
        (0.2, 0.2, lambda g, t: f"kernel: [{g.uptime(t)}] TCP: request_sock_TCP: Possible SYN flooding on port {g.r.choice([80, 443, 8080])}. Sending cookies."),
        (0.05, 0.3, lambda g, t: f"kernel: [{g.uptime(t)}] Out of memory: Killed process {g.pid()} (java) total-vm:{g.r.randint(10**6, 10**7)}kB, anon-rss:{g.r.randint(10**5, 10**6)}kB"),
        (1, 1, lambda g, t: f"dhclient[{g.pid()}]: DHCPACK of {g.ip()} from {g.ip()}"),
    ]  # fmt: skip


def make_lines(n: int, seed: int) -> tuple[list[tuple[str, int]], int]:
    """``n`` (line, time in ms) pairs, times increasing over about an hour; and the
    number of shapes."""
    rng = random.Random(seed)
    gen = Gen(rng)
    shapes = _shapes()
    fns = [s for _, _, s in shapes]
    normal = [w for w, _, _ in shapes]
    incident = [w for _, w, _ in shapes]
    gaps = [rng.expovariate(1.0) for _ in range(n)]
    scale = SPAN_MS / sum(gaps)
    out: list[tuple[str, int]] = []
    at = 0.0
    for i in range(n):
        at += gaps[i] * scale
        t = T0 + int(at)
        share = (t - T0) / SPAN_MS
        weights = incident if INCIDENT[0] <= share < INCIDENT[1] else normal
        (fn,) = rng.choices(fns, weights)
        out.append((fn(gen, t), t))
    return out, len(shapes)


# --- the server -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    home: Path, env_extra: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``opsloop server`` as a user starts it, on a free loopback port (as the server
    tests' ``start_server`` does)."""
    port = free_port()
    log = home / "server.log"
    env = {**os.environ, "OPSLOOP_HOME": str(home)}
    env.pop("OPSLOOP_DATABASE_URL", None)
    env.pop("OPSLOOP_ARTIFACTS", None)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "opsloop.cli.main", "server"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"opsloop server exited at start:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).text == "OK":
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise RuntimeError(f"opsloop server did not answer /health:\n{log.read_text()}")
        time.sleep(0.05)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def pg_check(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else why not."""
    import sqlalchemy as sa

    try:
        eng = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(sa.text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


@contextlib.contextmanager
def pg_schema_url(base: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards (as the
    tests' ``pg_schema_url`` makes one)."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(base)
    with eng.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with eng.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        eng.dispose()


# --- the run --------------------------------------------------------------------------


@dataclass
class Result:
    store: str
    lines: int
    seconds: float
    batch_ms: list[float]
    templates: int
    stored_lines: int
    anomalies: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


def ingest(url: str, store: str, bodies: list[tuple[int, bytes]], n: int) -> Result:
    accepted = 0
    batch_ms: list[float] = []
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=300.0) as client:
        t0 = time.perf_counter()
        for k, (size, body) in enumerate(bodies):
            tb = time.perf_counter()
            r = client.post("/api/v1/logs", content=body, headers=headers)
            batch_ms.append((time.perf_counter() - tb) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"{store}: batch {k} answered {r.status_code}: {r.text[:2000]}")
            got = r.json()
            if got["accepted"] != size or got["rejected"]:
                raise SystemExit(
                    f"{store}: batch {k} accepted {got['accepted']} of {size} lines, "
                    f"rejected {got['rejected'][:5]}"
                )
            accepted += got["accepted"]
        seconds = time.perf_counter() - t0
        if accepted != n:
            raise SystemExit(f"{store}: {accepted:,} lines accepted of {n:,} sent")
        r = client.get(f"/api/v1/logs/{SOURCE}/templates", params={"limit": 100_000})
        r.raise_for_status()
        templates = len(r.json()["items"])
        r = client.get("/api/v1/logs/sources")
        r.raise_for_status()
        (src,) = [s for s in r.json()["items"] if s["source"] == SOURCE]
        if src["lines"] != n or src["templates"] != templates:
            raise SystemExit(
                f"{store}: the source holds {src['lines']:,} lines and {src['templates']} "
                f"templates; sent {n:,} lines, {templates} templates listed"
            )
        r = client.get("/api/v1/logs/anomalies", params={"source": SOURCE, "limit": 100_000})
        r.raise_for_status()
        anomalies = Counter(e["source"].removeprefix("logs:") for e in r.json()["items"])
    return Result(store, n, seconds, batch_ms, templates, src["lines"], anomalies)


def run(store: str, bodies: list[tuple[int, bytes]], n: int, env: dict[str, str]) -> Result:
    home = Path(tempfile.mkdtemp(prefix=f"opsloop-bench-{store.lower()}-"))
    proc, url = start_server(home, env)
    try:
        res = ingest(url, store, bodies, n)
    except BaseException:
        print(f"{store}: the server's log is {home / 'server.log'}", file=sys.stderr)
        raise
    finally:
        stop_server(proc)
    shutil.rmtree(home, ignore_errors=True)
    ms = sorted(res.batch_ms)
    events = ", ".join(f"{k} {v}" for k, v in sorted(res.anomalies.items())) or "none"
    print(
        f"{store}: {n:,} lines in {len(bodies)} batches, {res.seconds:.2f} s, "
        f"{res.rate:,.0f} lines/s; a batch p50 {statistics.median(ms):.1f} ms, "
        f"max {ms[-1]:.1f} ms; {res.templates} templates; "
        f"log.anomaly events {sum(res.anomalies.values())} ({events})"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1_000, help="lines a request")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL (a fresh schema is made)")
    ap.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = ap.parse_args()
    if args.lines < 1 or args.batch < 1:
        ap.error("--lines and --batch must be >= 1")

    t = time.perf_counter()
    lines, shapes = make_lines(args.lines, args.seed)
    bodies: list[tuple[int, bytes]] = []
    for i in range(0, len(lines), args.batch):
        part = [{"line": s, "time": ms} for s, ms in lines[i : i + args.batch]]
        body = json.dumps({"source": SOURCE, "lines": part}).encode()
        bodies.append((len(part), body))
    size = sum(len(b) for _, b in bodies)
    print(
        f"{len(lines):,} lines of {shapes} shapes ({sum(len(s) for s, _ in lines) / len(lines):.0f} "
        f"characters on average, {(lines[-1][1] - lines[0][1]) / 60_000:.1f} minutes of log time), "
        f"{len(bodies)} batches of up to {args.batch:,} lines, {size / 2**20:.1f} MiB of JSON; "
        f"made in {time.perf_counter() - t:.1f} s"
    )

    results = [run("SQLite", bodies, len(lines), {})]
    if args.no_pg:
        print("PostgreSQL: skipped (--no-pg)")
    elif (why := pg_check(args.pg)) is not None:
        print(f"PostgreSQL: skipped, {args.pg} does not answer: {why}")
    else:
        with pg_schema_url(args.pg) as url:
            results.append(run("PostgreSQL", bodies, len(lines), {"OPSLOOP_DATABASE_URL": url}))

    print()
    print(
        f"{'store':<12}{'lines':>10}{'seconds':>10}{'lines/s':>10}{'templates':>11}{'anomalies':>11}"
    )
    for r in results:
        print(
            f"{r.store:<12}{r.lines:>10,}{r.seconds:>10.2f}{r.rate:>10,.0f}"
            f"{r.templates:>11}{sum(r.anomalies.values()):>11}"
        )


if __name__ == "__main__":
    main()
