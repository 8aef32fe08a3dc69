"""Scraping: read Prometheus text-format ``/metrics`` endpoints into signals.

A target is a URL, a ``job`` and an interval. Each scrape stores every sample as its
own series, as Prometheus does: a histogram's ``_bucket`` (with ``le``), ``_sum`` and
``_count``, a counter's ``_total``. Every series gets the target's ``job`` and
``instance`` (host:port) labels; a sample that carries its own ``job`` or ``instance``
keeps it as ``exported_job``/``exported_instance``. Beside the samples, each scrape
writes ``up`` (1 or 0), ``scrape_duration_seconds`` and ``scrape_samples_scraped``.

A target that is down, answers an error status, times out, or returns something that
does not parse is a failed scrape: ``up`` = 0, the reason kept on the target
(``last_error``), none of its samples stored, and the other targets go on.

Targets live in the ``signal_scrape_targets`` table (``opsloop signals scrape add
URL --every 15s``) and in ``OPSLOOP_SIGNALS_SCRAPE`` (``[job=]URL,...``); the
deployments ``opsloop server`` serves itself (a ``port`` setting) are scraped too,
as job ``opsloop-serving`` (:func:`deployment_targets`).

Example::

    targets = ScrapeTargets(store)
    targets.add("http://127.0.0.1:8080/metrics", job="churn-serving", every="15s")
    result = scrape_once(targets.get("http://127.0.0.1:8080/metrics"))
    Signals(store).ingest(result.rows)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from opsloop.aiops.signals.model import (
    check_labels,
    check_name,
    format_duration_ms,
    parse_duration_ms,
)
from opsloop.aiops.signals.storage import Row
from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, NotFound, OpsloopError
from opsloop.store.tables import MAX_NAME_LENGTH
from opsloop.store.tables_signals import signal_scrape_targets

if TYPE_CHECKING:
    from opsloop.store import Store

T = signal_scrape_targets
MAX_BODY = 16 * 1024 * 1024
MAX_SAMPLES = 200_000
DEFAULT_EVERY_MS = 15_000
MIN_EVERY_MS = 1_000
SERVING_JOB = "opsloop-serving"
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


@dataclass(frozen=True)
class ScrapeTarget:
    """Where to scrape, how often, and how the last scrape went."""

    name: str
    url: str
    job: str
    labels: dict[str, str] = field(default_factory=dict)
    interval_ms: int = DEFAULT_EVERY_MS
    timeout_ms: int = 10_000
    enabled: bool = True
    creation_time: int = 0
    last_scrape_time: int | None = None
    last_duration_ms: int | None = None
    last_samples: int | None = None
    last_error: str | None = None

    @property
    def instance(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def up(self) -> bool | None:
        if self.last_scrape_time is None:
            return None
        return self.last_error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "job": self.job,
            "instance": self.instance,
            "labels": self.labels,
            "interval_ms": self.interval_ms,
            "every": format_duration_ms(self.interval_ms),
            "timeout_ms": self.timeout_ms,
            "enabled": self.enabled,
            "creation_time": self.creation_time,
            "last_scrape_time": self.last_scrape_time,
            "last_duration_ms": self.last_duration_ms,
            "last_samples": self.last_samples,
            "last_error": self.last_error,
            "up": self.up,
        }


@dataclass(frozen=True)
class ScrapeResult:
    """One scrape: the rows to store (the samples and the ``up`` series), or why not."""

    target: ScrapeTarget
    time_ms: int
    rows: list[Row]
    samples: int
    duration_ms: int
    error: str | None = None
    skipped: int = 0  # samples left out (a name or label Prometheus' rules refuse)

    @property
    def up(self) -> bool:
        return self.error is None


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(f"a scrape target is an http(s) URL, got {url!r}")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"a scrape target is an http(s) URL such as http://host:8080/metrics, got {url!r}"
        )
    return url


def _target_of(r: Any) -> ScrapeTarget:
    return ScrapeTarget(
        name=r.name,
        url=r.url,
        job=r.job,
        labels=json.loads(r.labels),
        interval_ms=int(r.interval_ms),
        timeout_ms=int(r.timeout_ms),
        enabled=bool(r.enabled),
        creation_time=int(r.creation_time),
        last_scrape_time=r.last_scrape_time,
        last_duration_ms=r.last_duration_ms,
        last_samples=r.last_samples,
        last_error=r.last_error,
    )


def make_target(
    url: str,
    *,
    job: str | None = None,
    every: str | int | float | None = None,
    timeout: str | int | float | None = None,
    labels: dict[str, str] | None = None,
    name: str | None = None,
) -> ScrapeTarget:
    """A checked target (not stored)."""
    url = check_url(url)
    job = job or "scrape"
    if not isinstance(job, str) or len(job) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a job is a name of at most {MAX_NAME_LENGTH} characters, got {job!r}")
    interval = DEFAULT_EVERY_MS if every is None else parse_duration_ms(every, "the interval")
    if interval < MIN_EVERY_MS:
        raise InvalidInput(f"scrape at most once a second, got every {interval} ms")
    time_out = (
        min(10_000, interval) if timeout is None else parse_duration_ms(timeout, "the timeout")
    )
    extra = check_labels(labels)
    for reserved in ("job", "instance"):
        if reserved in extra:
            raise InvalidInput(f"label {reserved!r} is set from the target; give --job instead")
    name = name or url
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"a target's name is at most {MAX_NAME_LENGTH} characters")
    return ScrapeTarget(name, url, job, extra, interval, time_out)


class ScrapeTargets:
    """Scrape targets stored in the database."""

    def __init__(self, store: Store, *, clock: Callable[[], int] | None = None) -> None:
        self.db = store.db
        self.clock = clock or now_ms

    def add(
        self,
        url: str,
        *,
        job: str | None = None,
        every: str | int | float | None = None,
        timeout: str | int | float | None = None,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        replace: bool = False,
    ) -> ScrapeTarget:
        """Scrape ``url`` every ``every`` (``15s``) from now on, under ``job``.

        Example::

            targets.add("http://127.0.0.1:8080/metrics", job="serving", every="15s")
        """
        t = make_target(url, job=job, every=every, timeout=timeout, labels=labels, name=name)
        row = {
            "name": t.name,
            "url": t.url,
            "job": t.job,
            "labels": json.dumps(t.labels, sort_keys=True),
            "interval_ms": t.interval_ms,
            "timeout_ms": t.timeout_ms,
            "enabled": True,
            "creation_time": self.clock(),
        }
        with self.db.write() as conn:
            if conn.execute(sa.select(T.c.name).where(T.c.name == t.name)).first() is not None:
                if not replace:
                    raise Conflict(
                        f"a scrape target named {t.name!r} exists; remove it first or replace it"
                    )
                conn.execute(T.delete().where(T.c.name == t.name))
            conn.execute(sa.insert(T).values(**row))
        return self.get(t.name)

    def get(self, name: str) -> ScrapeTarget:
        with self.db.read() as conn:
            r = conn.execute(sa.select(T).where(T.c.name == name)).first()
        if r is None:
            raise NotFound(
                f"no scrape target named {name!r}; `opsloop signals scrape ls` lists them"
            )
        return _target_of(r)

    def list(self) -> list[ScrapeTarget]:
        with self.db.read() as conn:
            return [_target_of(r) for r in conn.execute(sa.select(T).order_by(T.c.name))]

    def remove(self, name: str) -> None:
        with self.db.write() as conn:
            if conn.execute(T.delete().where(T.c.name == name)).rowcount == 0:
                raise NotFound(f"no scrape target named {name!r}")

    def record(self, result: ScrapeResult) -> None:
        """Keep how a stored target's scrape went (nothing for an environment target)."""
        with self.db.write() as conn:
            conn.execute(
                T.update()
                .where(T.c.name == result.target.name)
                .values(
                    last_scrape_time=result.time_ms,
                    last_duration_ms=result.duration_ms,
                    last_samples=result.samples,
                    last_error=result.error,
                )
            )


def targets_from_env(value: str | None, every: str | None = None) -> list[ScrapeTarget]:
    """Targets from ``OPSLOOP_SIGNALS_SCRAPE``: ``[job=]URL`` separated by commas."""
    out = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        job, _, url = part.rpartition("=") if "=" in part.split("://")[0] else ("", "", part)
        t = make_target(url, job=job or None, every=every or None, name=f"env:{url}")
        out.append(t)
    return out


def deployment_targets(store: Store, every: str | None = None) -> list[ScrapeTarget]:
    """The ``/metrics`` of the deployments ``opsloop server`` serves itself (those with
    a ``port`` setting), as targets of job ``opsloop-serving`` with a ``deployment``
    label.

    Example::

        [t.url for t in deployment_targets(store)]   # ['http://127.0.0.1:8081/metrics']
    """
    from opsloop.serving.deployments import DeploymentService

    out = []
    for d in DeploymentService(store).list():
        port = d.settings.get("port")
        if isinstance(port, bool) or not isinstance(port, int):
            continue
        host = str(d.settings.get("host") or "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"  # listening everywhere: reach it on loopback
        if ":" in host:
            host = f"[{host}]"
        out.append(
            make_target(
                f"http://{host}:{port}/metrics",
                job=SERVING_JOB,
                every=every,
                labels={"deployment": d.name},
                name=f"deployment:{d.name}",
            )
        )
    return out


def parse_metrics(text: str, target: ScrapeTarget, at: int) -> tuple[list[Row], int, int]:
    """The rows of a text-format exposition (raises ValueError if it does not parse):
    rows, samples read, samples skipped."""
    from prometheus_client.parser import text_string_to_metric_families

    base = dict(target.labels)
    rows: list[Row] = []
    samples = skipped = 0
    # The parser is lazy: read it all before storing any, so garbage stores nothing.
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples += 1
            if samples > MAX_SAMPLES:
                raise ValueError(f"more than {MAX_SAMPLES} samples in one scrape")
            labels = dict(base)
            for k, v in s.labels.items():
                labels[f"exported_{k}" if k in ("job", "instance") else k] = v
            labels["job"] = target.job
            labels["instance"] = target.instance
            ts = at
            if s.timestamp is not None:
                ts = round(float(s.timestamp) * 1000)
            try:
                rows.append((check_name(s.name), check_labels(labels), int(ts), float(s.value)))
            except (InvalidInput, TypeError, ValueError):
                skipped += 1
    return rows, samples, skipped


def _meta(target: ScrapeTarget, at: int, up: bool, seconds: float, samples: int) -> list[Row]:
    labels = check_labels({**target.labels, "job": target.job, "instance": target.instance})
    return [
        ("up", labels, at, 1.0 if up else 0.0),
        ("scrape_duration_seconds", labels, at, seconds),
        ("scrape_samples_scraped", labels, at, float(samples)),
    ]


def scrape_once(
    target: ScrapeTarget, *, client: httpx.Client | None = None, at: int | None = None
) -> ScrapeResult:
    """Scrape one target now; never raises for the target's faults (see the module
    docstring).

    Example::

        r = scrape_once(make_target("http://127.0.0.1:8080/metrics", job="serving"))
        r.up, r.samples, r.error
    """
    at = now_ms() if at is None else at
    started = time.perf_counter()
    error: str | None = None
    rows: list[Row] = []
    samples = skipped = 0
    own = client is None
    http = client or httpx.Client(follow_redirects=True)
    try:
        body = _fetch(http, target)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        rows, samples, skipped = parse_metrics(text, target, at)
    except httpx.TimeoutException:
        error = f"timed out after {target.timeout_ms} ms"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except (ValueError, OpsloopError) as exc:
        error = f"not Prometheus text format: {exc}"[:2000]
    finally:
        if own:
            http.close()
    seconds = time.perf_counter() - started
    if error is not None:
        rows = []
        samples = 0
    rows.extend(_meta(target, at, error is None, seconds, samples))
    return ScrapeResult(target, at, rows, samples, round(seconds * 1000), error, skipped)


class _Fault(ValueError):
    pass


def _fetch(http: httpx.Client, target: ScrapeTarget) -> bytes:
    timeout = target.timeout_ms / 1000
    deadline = time.monotonic() + timeout
    with http.stream("GET", target.url, timeout=timeout, headers={"Accept": ACCEPT}) as resp:
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(
                f"HTTP {resp.status_code} from {target.url}", request=resp.request, response=resp
            )
        chunks, size = [], 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                raise _Fault(f"the body is larger than {MAX_BODY} bytes")
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the body took too long", request=resp.request)
            chunks.append(chunk)
    return b"".join(chunks)
