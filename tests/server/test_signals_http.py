"""``/api/v1/signals`` on a real ``opsloop server``: push, query, limits, scrape targets,
and the server's signals service scraping, collecting the host and raising events."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from opsloop.core.ids import now_ms

T0 = 1_700_000_000_000


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``probe`` until it returns something truthy (the server's service ticks
    every second), or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def metrics_endpoint() -> Iterator[str]:
    body = b"# TYPE jobs_waiting gauge\njobs_waiting 7\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/metrics"
    srv.shutdown()
    srv.server_close()


def test_push_then_query_by_selector_and_time(http: httpx.Client, unique: str) -> None:
    name = f"latency_p99_ms_{unique}"
    points = [
        {"name": name, "labels": {"svc": "api"}, "timestamp": T0 + i * 1000, "value": 100.0 + i}
        for i in range(5)
    ]
    points.append({"name": name, "labels": {"svc": "web"}, "timestamp": T0, "value": "NaN"})
    r = http.post("/api/v1/signals", json={"points": points})
    assert r.status_code == 200, r.text
    assert r.json() == {"points": 6, "series": 2, "new_series": 2}
    r = http.get(
        "/api/v1/signals",
        params={"selector": f'{name}{{svc="api"}}', "start": T0 + 1000, "end": T0 + 3000},
    )
    assert r.status_code == 200, r.text
    [s] = r.json()["series"]
    assert s["labels"] == {"svc": "api"}
    assert s["timestamps"] == [T0 + 1000, T0 + 2000, T0 + 3000]
    assert s["values"] == [101.0, 102.0, 103.0]
    [web] = http.get("/api/v1/signals", params={"selector": f'{name}{{svc=~"w.*"}}'}).json()[
        "series"
    ]
    assert web["values"] == ["NaN"]
    items = http.get("/api/v1/signals/series", params={"selector": name}).json()["items"]
    assert [(i["labels"]["svc"], i["last_value"]) for i in items] == [
        ("api", 104.0),
        ("web", "NaN"),
    ]


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"name": "x y", "value": 1}, "points[2].name"),
        ({"name": "x", "value": "lots"}, "points[2].value"),
        ({"name": "x", "timestamp": -1, "value": 1}, "points[2].timestamp"),
        ({"name": "x", "labels": {"a": 5}, "value": 1}, "points[2].labels"),
        ({"name": "x"}, "points[2].value"),
    ],
)
def test_a_bad_point_is_a_400_naming_it_and_nothing_of_the_batch_is_stored(
    http: httpx.Client, unique: str, bad: dict[str, Any], where: str
) -> None:
    name = f"batch_{unique}"
    good = {"name": name, "timestamp": T0, "value": 1.0}
    r = http.post("/api/v1/signals", json={"points": [good, good, bad, good]})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"].startswith(where + ":"), body
    assert http.get("/api/v1/signals", params={"selector": name}).json() == {"series": []}


def test_bodies_that_are_not_batches(http: httpx.Client) -> None:
    for content in (b"{not json", b'"x"', b'{"pts": []}', b"3"):
        r = http.post(
            "/api/v1/signals", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, (content, r.text)
        assert set(r.json()) == {"error_code", "message"}
    r = http.get("/api/v1/signals", params={"selector": "a{b="})
    assert r.status_code == 400 and "selector" in r.json()["message"]
    r = http.get("/api/v1/signals", params={"selector": "a", "start": 5, "end": 1})
    assert r.status_code == 400


def test_limits_and_scrape_targets(http: httpx.Client, unique: str) -> None:
    name = f"disk_{unique}"
    r = http.post(
        "/api/v1/signals/limits",
        json={"selector": f'{name}{{mount="/"}}', "above": 90, "horizon": "6h", "name": name},
    )
    assert r.status_code == 201, r.text
    assert r.json()["window"] == "3h"
    r = http.post("/api/v1/signals/limits", json={"selector": name, "above": 90, "name": name})
    assert r.status_code == 409
    r = http.post("/api/v1/signals/limits", json={"selector": name})
    assert r.status_code == 400 and "above" in r.json()["message"]
    assert name in [x["name"] for x in http.get("/api/v1/signals/limits").json()["items"]]
    assert http.get("/api/v1/signals/limits/forecast", params={"name": name}).json() == {
        "items": [],
        "next_page_token": None,
    }
    assert http.delete("/api/v1/signals/limits", params={"name": name}).status_code == 204
    assert http.delete("/api/v1/signals/limits", params={"name": name}).status_code == 404

    r = http.post("/api/v1/signals/scrape-targets", json={"url": "gopher://x"})
    assert r.status_code == 400
    r = http.post(
        "/api/v1/signals/scrape-targets",
        json={"url": "http://127.0.0.1:9/metrics", "name": unique, "every": "1h"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["every"] == "1h" and r.json()["up"] is None
    assert http.delete("/api/v1/signals/scrape-targets", params={"name": unique}).status_code == 204


def test_the_server_scrapes_collects_the_host_and_raises_breach_events(
    http: httpx.Client, unique: str, metrics_endpoint: str
) -> None:
    r = http.post(
        "/api/v1/signals/scrape-targets",
        json={"url": metrics_endpoint, "job": unique, "every": "1s", "name": unique},
    )
    assert r.status_code == 201, r.text
    try:

        def scraped() -> list[dict[str, Any]]:
            found = http.get(
                "/api/v1/signals", params={"selector": f'jobs_waiting{{job="{unique}"}}'}
            )
            return found.json()["series"]  # type: ignore[no-any-return]

        [s] = wait_for("the server to scrape the target", scraped)
        assert s["values"][0] == 7.0
        assert s["labels"]["instance"] == metrics_endpoint.split("/")[2]
        ups = http.get("/api/v1/signals", params={"selector": f'up{{job="{unique}"}}'}).json()
        assert ups["series"][0]["values"][0] == 1.0
    finally:
        http.delete("/api/v1/signals/scrape-targets", params={"name": unique})
    wait_for(
        "host signals",
        lambda: http.get("/api/v1/signals/series", params={"selector": "host_cpu_percent"}).json()[
            "items"
        ],
    )
    # A limit on a pushed signal: a breach becomes a critical event, raised by the server.
    name = f"queue_{unique}"
    http.post("/api/v1/signals/limits", json={"selector": name, "above": 100, "name": name})
    now = now_ms()
    r = http.post(
        "/api/v1/signals",
        json={
            "points": [
                {"name": name, "timestamp": now - 1000 + i, "value": 150.0} for i in range(3)
            ]
        },
    )
    assert r.status_code == 200, r.text

    def breach() -> list[dict[str, Any]]:
        found = http.get(
            "/api/v1/events", params={"kind": "signal.breach", "source": f"limit:{name}"}
        )
        return found.json()["items"]  # type: ignore[no-any-return]

    [e] = wait_for("the breach event", breach)
    assert e["severity"] == "critical" and e["subject"] == name
    assert e["payload"]["current_value"] == 150.0 and e["payload"]["limit"] == 100.0
    http.delete("/api/v1/signals/limits", params={"name": name})
