"""Scraping real HTTP endpoints, host signals, and the service that runs them once per store."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opsloop.aiops.signals.host import HostCollector
from opsloop.aiops.signals.limits import Limits
from opsloop.aiops.signals.scrape import (
    ScrapeTargets,
    make_target,
    parse_metrics,
    scrape_once,
    targets_from_env,
)
from opsloop.aiops.signals.service import SignalsService
from opsloop.aiops.signals.storage import Signals
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.serving.metrics import ServingMetrics
from opsloop.store.events import list_events

T0 = 1_700_000_000_000


def serving_exposition() -> bytes:
    """What `opsloop serve` shows on /metrics after a few requests."""
    m = ServingMetrics()
    mm = m.for_model("churn", "3")
    for seconds in (0.004, 0.02, 0.3):
        mm.answered("v2", 200, seconds)
    mm.answered("v2", 400, 0.001)
    return m.exposition()


class Endpoints:
    """A real HTTP server on loopback with one handler per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
        self.release = threading.Event()
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                else:
                    route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def body(self, path: str, data: bytes, status: int = 200) -> str:
        def send(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", "text/plain; version=0.0.4")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.routes[path] = send
        return self.url + path

    def hang(self, path: str) -> str:
        def wait(h: http.server.BaseHTTPRequestHandler) -> None:
            self.release.wait(30)  # until the test ends: the scraper must give up first

        self.routes[path] = wait
        return self.url + path

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    e = Endpoints()
    yield e
    e.close()


def test_a_serving_endpoint_is_stored_as_prometheus_stores_it(endpoints: Endpoints) -> None:
    url = endpoints.body("/metrics", serving_exposition())
    target = make_target(url, job="serving", labels={"env": "test"})
    r = scrape_once(target, at=T0)
    assert r.up and r.error is None and r.samples > 20
    by_key = {(name, tuple(sorted(labels.items()))): v for name, labels, _t, v in r.rows}
    inst = target.instance
    common = (("env", "test"), ("instance", inst), ("job", "serving"))
    model = (("model", "churn"), ("protocol", "v2"), ("version", "3"))

    def key(name: str, *extra: tuple[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted(common + extra))

    # A histogram: a series per bucket (le), _sum and _count, as Prometheus keeps them.
    assert by_key[key("opsloop_serving_request_seconds_bucket", *model, ("le", "0.025"))] == 3.0
    assert by_key[key("opsloop_serving_request_seconds_bucket", *model, ("le", "+Inf"))] == 4.0
    assert by_key[key("opsloop_serving_request_seconds_count", *model)] == 4.0
    assert by_key[key("opsloop_serving_request_seconds_sum", *model)] == pytest.approx(0.325)
    assert by_key[key("opsloop_serving_requests_total", *model, ("code", "400"))] == 1.0
    assert by_key[key("up")] == 1.0
    assert by_key[key("scrape_samples_scraped")] == r.samples
    assert all(t == T0 for _n, _l, t, _v in r.rows)


def test_own_job_and_instance_labels_are_kept_as_exported() -> None:
    target = make_target("http://127.0.0.1:9/metrics", job="pushgw")
    text = 'jobs_done_total{job="nightly",instance="a"} 3 1700000000123\nplain 1.5\n'
    rows, samples, skipped = parse_metrics(text, target, T0)
    assert (samples, skipped) == (2, 0)
    (_n1, l1, t1, v1), (n2, _l2, t2, v2) = rows
    assert l1 == {
        "exported_instance": "a",
        "exported_job": "nightly",
        "instance": "127.0.0.1:9",
        "job": "pushgw",
    }
    assert (t1, v1) == (1_700_000_000_123, 3.0)  # the sample's own timestamp
    assert (n2, t2, v2) == ("plain", T0, 1.5)


def test_down_garbage_and_slow_targets_are_failed_scrapes_and_do_not_stop_others(
    store: Any, endpoints: Endpoints
) -> None:
    good = endpoints.body("/metrics", serving_exposition())
    garbage = endpoints.body("/garbage", b"<html><body>Hello</body></html>\n")
    binary = endpoints.body("/binary", bytes(range(256)) * 10)
    error = endpoints.body("/error", b"boom", status=500)
    slow = endpoints.hang("/slow")
    targets = ScrapeTargets(store)
    for job, url in [
        ("good", good),
        ("garbage", garbage),
        ("binary", binary),
        ("error", error),
        ("down", "http://127.0.0.1:9/metrics"),
        ("slow", slow),
    ]:
        targets.add(url, job=job, every="15s", timeout="300ms" if job == "slow" else None)
    with pytest.raises(Conflict):
        targets.add(good, job="again")
    service = SignalsService(store, host_every_ms=None, clock=lambda: T0)
    try:
        report = service.tick()
    finally:
        service.stop()
    assert report.leader
    ups = {r.target.job: r.up for r in report.scrapes}
    assert ups == {
        "good": True,
        "garbage": False,
        "binary": False,
        "error": False,
        "down": False,
        "slow": False,
    }
    errors = {t.job: t.last_error for t in targets.list()}
    assert errors["good"] is None
    assert "not Prometheus text" in (errors["garbage"] or "")
    assert "not UTF-8" in (errors["binary"] or "")
    assert "500" in (errors["error"] or "")
    assert "Connect" in (errors["down"] or "")
    assert "timed out" in (errors["slow"] or "")
    sig = Signals(store)
    up = {d.series.labels["job"]: d.values.tolist() for d in sig.query("up")}
    assert up == {
        "good": [1.0],
        "garbage": [0.0],
        "binary": [0.0],
        "error": [0.0],
        "down": [0.0],
        "slow": [0.0],
    }
    # Nothing of a failed scrape but its up/scrape_* series.
    jobs = {s.labels["job"] for s in sig.series() if s.name.startswith("opsloop_serving")}
    assert jobs == {"good"}
    targets.remove(good)
    with pytest.raises(NotFound):
        targets.remove(good)


def test_targets_are_checked(store: Any) -> None:
    targets = ScrapeTargets(store)
    for url in ("ftp://x/metrics", "not a url", "", "http://"):
        with pytest.raises(InvalidInput):
            targets.add(url)
    with pytest.raises(InvalidInput):
        targets.add("http://h:1/metrics", every="10ms")
    with pytest.raises(InvalidInput):
        targets.add("http://h:1/metrics", labels={"job": "x"})
    env = targets_from_env("api=http://a:1/metrics, http://b:2/metrics", "30s")
    assert [(t.job, t.url, t.interval_ms) for t in env] == [
        ("api", "http://a:1/metrics", 30_000),
        ("scrape", "http://b:2/metrics", 30_000),
    ]


def test_host_signals() -> None:
    rows = HostCollector().collect(T0)
    names = {name for name, _l, _t, _v in rows}
    assert {
        "host_cpu_percent",
        "host_memory_used_percent",
        "host_disk_used_percent",
        "host_network_receive_bytes_total",
    } <= names
    disk = [(labels, v) for name, labels, _t, v in rows if name == "host_disk_used_percent"]
    assert any(labels["mountpoint"] == "/" and 0 <= v <= 100 for labels, v in disk)
    assert all(labels["job"] == "host" and labels["host"] for _n, labels, _t, _v in rows)


def test_one_service_per_store_acts_and_checks_limits_on_new_points(
    store: Any, endpoints: Endpoints
) -> None:
    clock = [T0]
    now = lambda: clock[0]  # noqa: E731
    url = endpoints.body("/metrics", b"queue_depth 3\n")
    env = targets_from_env(f"q={url}", "10s")
    a = SignalsService(store, host_every_ms=15_000, extra_targets=env, clock=now)
    b = SignalsService(store, host_every_ms=15_000, extra_targets=env, clock=now)
    try:
        ra, rb = a.tick(), b.tick()
        assert ra.leader and not rb.leader
        assert ra.host_points > 10 and [r.up for r in ra.scrapes] == [True]
        # Not due yet: nothing scraped or collected again.
        clock[0] += 5_000
        r = a.tick()
        assert r.scrapes == [] and r.host_points == 0
        # Pushed points are checked against limits by the tick.
        Limits(store).add("load", above=10, name="load")
        Signals(store).push([{"name": "load", "timestamp": clock[0], "value": 50.0}])
        r = a.tick()
        assert [(e.limit, e.state) for e in r.evaluations] == [("load", "breached")]
        assert [e.kind for e in list_events(store.db, source="limit:load")] == ["signal.breach"]
        # The leader goes away: the other takes over at once.
        a.stop()
        clock[0] += 10_000
        rb = b.tick()
        assert rb.leader and [r.up for r in rb.scrapes] == [True]
    finally:
        a.stop()
        b.stop()
    [q] = Signals(store).query('queue_depth{job="q"}')
    assert q.values.tolist() == [3.0, 3.0]


def test_the_deployments_opsloop_serves_are_scraped(store: Any, endpoints: Endpoints) -> None:
    from opsloop.registry.service import RegistryService
    from opsloop.serving.deployments import DeploymentService

    endpoints.body("/metrics", serving_exposition())
    port = int(endpoints.url.rsplit(":", 1)[1])
    reg = RegistryService(store)
    reg.create_registered_model("churn")
    reg.create_model_version(
        "churn", "mlflow-artifacts:/0/x", flavor="sklearn", signature="{}", environment="{}"
    )
    deployments = DeploymentService(store)
    deployments.create("churn-api", "churn", version=1, settings={"port": port})
    deployments.create("churn-batch", "churn", version=1)  # not served by opsloop: left out
    service = SignalsService(store, host_every_ms=None, scrape_deployments=True, clock=lambda: T0)
    try:
        report = service.tick()
    finally:
        service.stop()
    [r] = report.scrapes
    assert r.up and r.target.job == "opsloop-serving"
    [up] = Signals(store).query('up{job="opsloop-serving"}')
    assert up.series.labels == {
        "deployment": "churn-api",
        "instance": f"127.0.0.1:{port}",
        "job": "opsloop-serving",
    }
    assert Signals(store).series('opsloop_serving_request_seconds_count{deployment="churn-api"}')
