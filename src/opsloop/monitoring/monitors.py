"""Monitors: a deployment's prediction log checked on time against a reference.

A monitor names a deployment, a reference (a registered dataset version,
``sensors@3``), the checks to run, their thresholds, how often (``every``) and over
what span of the log (``window``)::

    opsloop.monitoring.create_monitor("churn", reference="sensors@3", every="10m", window="1h")
    opsloop.monitoring.run_monitor("churn")              # now, over the last hour
    opsloop.monitoring.monitor_results("churn")          # the time series, a DataFrame

**The checks** (``checks=``; each one that cannot apply says why in the run's notes):

- ``input_drift``: the window's inputs against the reference's feature columns
  (``opsloop.monitoring.drift``: per-column tests, the missing/unseen/out-of-range/type
  signals, and the multivariate checks); the features are the reference's columns
  less the label, prediction and score columns, unless ``features`` names them;
- ``output_drift``: the prediction column against the reference's column of that name
  (a reference that records its model's predictions);
- ``quality``: the data part's validation checks, those the reference carries (its
  stored validation report) or ``quality_checks``, on the window;
- ``performance``: with labels (``opsloop.serving.log_labels``), the measured
  metrics of the labelled rows (``opsloop.monitoring.performance``);
- ``cbpe``: without labels, the estimated accuracy, precision, recall, F1 and ROC AUC
  of a binary classifier from its scores, calibrated on the reference's
  ``label_column`` and ``score_column`` (see ``opsloop.monitoring.performance.CBPE``
  for its assumptions).

By default a monitor runs every check its reference allows. **Thresholds**: the drift
ones are the engine's (``drift_threshold``: None for each test's default, a number, or
``"learned"``); ``performance_thresholds`` bounds metrics (``{"accuracy": 0.9,
"rmse": 4}``: a minimum for scores, a maximum for errors) for both the measured and the
estimated ones; any failed quality check alerts.

**Runs.** The server's monitor scheduler (``opsloop.monitoring.monitor_scheduler``:
one per store, by a lease) runs each enabled
monitor at its slots - multiples of ``every`` since the epoch - over the ``window``
before the slot; a run that comes late runs once for the newest slot. ``run_monitor``
runs one now. Each run stores its status (``ok``, ``alert``, ``no_data`` - an empty
window, never an alert -, ``failed``), one result row per check and signal (the time
series), and, when something crossed its threshold, one ``monitor.alert`` event
(``opsloop.store.events``) for the deployment naming every drifted column, with the
statistics and the window - one event per run, however many signals alerted.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from opsloop.core.ids import now_ms
from opsloop.errors import Conflict, InvalidInput, NotFound
from opsloop.monitoring.window_checks import (
    CBPE_CHECK,
    CHECKS,
    INPUT_DRIFT,
    LOG_META,
    OUTPUT_DRIFT,
    PERFORMANCE,
    QUALITY,
    Outcome,
    WindowChecks,
    dataset_version,
    iso,
    jsonable,
)
from opsloop.store.events import event_row, record_event_in
from opsloop.store.tables import MAX_NAME_LENGTH, deployments, prediction_segments
from opsloop.store.tables_monitoring import monitor_results as R
from opsloop.store.tables_monitoring import monitor_runs as RUNS
from opsloop.store.tables_monitoring import monitors as M

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from opsloop.store import Store

log = logging.getLogger("opsloop.monitoring.monitors")

OK, ALERT, NO_DATA, FAILED = "ok", "alert", "no_data", "failed"
SCHEDULED, MANUAL = "scheduled", "manual"
MIN_EVERY_MS = 1000
MAX_SPAN_MS = 366 * 86_400_000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


# -- durations ----------------------------------------------------------------------------


def parse_duration(value: object, what: str = "a duration") -> int:
    """Milliseconds from ``"10m"``, ``"1h30m"``, ``"45s"``, ``"1d"``, ``"500ms"``, ``"2w"``
    or a number of seconds; InvalidInput for anything else.

    Example::

        parse_duration("1h30m")      # 5_400_000
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be like '10m', '1h' or '30s', got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{what} must be a positive number of seconds, got {value!r}")
        return round(value * 1000)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be like '10m', '1h' or '30s', got {value!r}")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise InvalidInput(
            f"{what} {value!r} is not a duration: use a number and a unit - ms, s, m, h, d, "
            "w - e.g. '10m', '1h30m' or '30s'"
        )
    ms = round(total)
    if ms <= 0:
        raise InvalidInput(f"{what} must be longer than 0, got {value!r}")
    return ms


def format_duration(ms: int) -> str:
    """``5_400_000`` -> ``"1h30m"``."""
    out, rest = [], int(ms)
    for unit in ("w", "d", "h", "m", "s", "ms"):
        n, rest = divmod(rest, _UNIT_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Monitor:
    """A stored monitor (see the module docstring)."""

    name: str
    deployment: str
    reference: str
    checks: tuple[str, ...]
    config: dict[str, Any]
    every_ms: int
    window_ms: int
    enabled: bool
    next_run_time: int | None
    description: str
    creation_time: int
    last_updated_time: int
    last_run: MonitorRun | None = None

    @property
    def notes(self) -> list[str]:
        """What a user should know about the monitor as configured."""
        out = []
        if self.window_ms < self.every_ms:
            out.append(
                f"the window ({format_duration(self.window_ms)}) is shorter than every "
                f"({format_duration(self.every_ms)}): predictions between windows are not "
                "checked"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployment": self.deployment,
            "reference": self.reference,
            "checks": list(self.checks),
            "config": self.config,
            "every": format_duration(self.every_ms),
            "window": format_duration(self.window_ms),
            "every_ms": self.every_ms,
            "window_ms": self.window_ms,
            "enabled": self.enabled,
            "next_run_time": self.next_run_time,
            "description": self.description,
            "creation_time": self.creation_time,
            "last_updated_time": self.last_updated_time,
            "notes": self.notes,
            "last_run": self.last_run.to_dict() if self.last_run else None,
        }


@dataclass(frozen=True)
class MonitorRun:
    """One run of a monitor: a window checked."""

    run_id: int
    monitor: str
    trigger: str
    run_time: int
    window_start: int
    window_end: int
    status: str
    rows: int
    message: str
    event_id: int | None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def alerted(self) -> bool:
        return self.status == ALERT

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "monitor": self.monitor,
            "trigger": self.trigger,
            "run_time": self.run_time,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "status": self.status,
            "rows": self.rows,
            "message": self.message,
            "event_id": self.event_id,
            "summary": self.summary,
        }


def _monitor(r: Any, last: MonitorRun | None = None) -> Monitor:
    return Monitor(
        name=r.name,
        deployment=r.deployment,
        reference=r.reference,
        checks=tuple(json.loads(r.checks)),
        config=json.loads(r.config),
        every_ms=int(r.every_ms),
        window_ms=int(r.window_ms),
        enabled=bool(r.enabled),
        next_run_time=None if r.next_run_time is None else int(r.next_run_time),
        description=r.description,
        creation_time=int(r.creation_time),
        last_updated_time=int(r.last_updated_time),
        last_run=last,
    )


def _run(r: Any) -> MonitorRun:
    return MonitorRun(
        run_id=int(r.run_id),
        monitor=r.monitor,
        trigger=r.trigger,
        run_time=int(r.run_time),
        window_start=int(r.window_start),
        window_end=int(r.window_end),
        status=r.status,
        rows=int(r.num_rows),
        message=r.message,
        event_id=None if r.event_id is None else int(r.event_id),
        summary=json.loads(r.summary) if r.summary else {},
    )


# -- the service ----------------------------------------------------------------------------


class MonitorService:
    """Monitors on one store: create, read, change, run, and read their results.

    Example::

        svc = MonitorService(store)
        svc.create("churn", deployment="churn", reference="sensors@3", every="10m", window="1h")
        run = svc.run("churn")                        # the last hour, now
        svc.results("churn")                          # DataFrame
    """

    def __init__(self, store: Store, clock: Callable[[], int] | None = None) -> None:
        self.store = store
        self.db = store.db
        self.clock = clock or now_ms
        self.checks = WindowChecks(store)

    # -- create / read / change ----------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        reference: str,
        deployment: str | None = None,
        every: str | float = "10m",
        window: str | float = "1h",
        checks: Sequence[str] | None = None,
        features: Sequence[str] | None = None,
        prediction_column: str = "prediction",
        score_column: str | None = None,
        label_column: str | None = None,
        task: str | None = None,
        positive: Any = 1,
        drift_threshold: float | str | None = None,
        drift_tests: str | Mapping[str, str] | None = None,
        multivariate: bool = True,
        performance_thresholds: Mapping[str, float] | None = None,
        quality_checks: Sequence[Any] | None = None,
        min_rows: int = 1,
        enabled: bool = True,
        description: str = "",
    ) -> Monitor:
        """Create a monitor (``deployment`` defaults to its name). Checks everything
        first - the deployment, the reference, the durations, the checks against what
        the reference holds - and fits and stores the reference's drift profile, so the
        first run only reads the window. InvalidInput, NotFound or Conflict on a
        problem; nothing is stored then."""
        from opsloop.monitoring.performance import CLASSIFIER_METRICS, REGRESSOR_METRICS, TASKS
        from opsloop.monitoring.quality import checks_of, specs_of

        name = _check_name(name, "monitor name")
        deployment = _check_name(deployment or name, "deployment name", strict=False)
        every_ms = parse_duration(every, "every")
        window_ms = parse_duration(window, "window")
        if every_ms < MIN_EVERY_MS:
            raise InvalidInput(f"every must be at least 1s, got {every!r}")
        if every_ms > MAX_SPAN_MS or window_ms > MAX_SPAN_MS:
            raise InvalidInput("every and window are limited to 366 days")
        if task is not None and task not in TASKS:
            raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
            raise InvalidInput(f"min_rows must be a whole number >= 1, got {min_rows!r}")
        if drift_threshold is not None and drift_threshold != "learned":
            if isinstance(drift_threshold, bool) or not isinstance(drift_threshold, int | float):
                raise InvalidInput(
                    f"drift_threshold must be a number or 'learned', got {drift_threshold!r}"
                )
            drift_threshold = float(drift_threshold)
        bounds: dict[str, float] = {}
        for metric, bound in (performance_thresholds or {}).items():
            if metric not in (*CLASSIFIER_METRICS, *REGRESSOR_METRICS):
                raise InvalidInput(
                    f"unknown performance metric {metric!r}; known: "
                    f"{', '.join((*CLASSIFIER_METRICS, *REGRESSOR_METRICS))}"
                )
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise InvalidInput(f"the threshold of {metric} must be a number, got {bound!r}")
            bounds[metric] = float(bound)
        quality_specs = None
        if quality_checks is not None:
            quality_specs = specs_of(checks_of(quality_checks))
        if not _deployment_known(self.db, deployment):
            raise NotFound(
                f"deployment {deployment!r} does not exist and has no prediction log: "
                "create it first (opsloop deploy create) or name another with --deployment"
            )
        dv = dataset_version(self.store, reference)
        columns = dv.columns
        if label_column is None:
            label_column = next((c for c in ("label", "target") if c in columns), None)
        elif label_column not in columns:
            raise InvalidInput(
                f"the reference {dv.ref} has no label column {label_column!r}; it has {columns}"
            )
        if score_column is not None:
            _check_name(score_column, "score column", strict=False)
        outputs = {prediction_column, score_column, label_column} - {None}
        if features is None:
            features = [c for c in columns if c not in outputs and c not in LOG_META]
        else:
            features = [str(f) for f in features]
            missing = [f for f in features if f not in columns]
            if missing:
                raise InvalidInput(
                    f"the reference {dv.ref} has no column(s) {missing}; it has {columns}"
                )
        possible = {
            INPUT_DRIFT: None if features else "the reference has no feature columns",
            OUTPUT_DRIFT: None
            if prediction_column in columns
            else f"the reference {dv.ref} has no column {prediction_column!r} (the model's "
            "predictions on it)",
            QUALITY: None,
            PERFORMANCE: None,
            CBPE_CHECK: None
            if score_column and label_column and score_column in columns
            else f"CBPE needs the reference's labels and scores: give score_column (the "
            f"probability of the positive class) and label_column, both columns of {dv.ref}",
        }
        if checks is None:
            chosen = [c for c in CHECKS if possible[c] is None]
        else:
            chosen = []
            for c in checks:
                if c not in CHECKS:
                    raise InvalidInput(f"unknown check {c!r}; the checks: {', '.join(CHECKS)}")
                if possible[c] is not None:
                    raise InvalidInput(f"check {c!r} cannot run: {possible[c]}")
                if c not in chosen:
                    chosen.append(c)
            if not chosen:
                raise InvalidInput(f"give at least one check: {', '.join(CHECKS)}")
        config = {
            "features": list(features),
            "prediction_column": prediction_column,
            "score_column": score_column,
            "label_column": label_column,
            "task": task,
            "positive": jsonable(positive),
            "drift_threshold": drift_threshold,
            "drift_tests": dict(drift_tests) if isinstance(drift_tests, Mapping) else drift_tests,
            "multivariate": bool(multivariate),
            "performance_thresholds": bounds,
            "quality_checks": quality_specs,
            "min_rows": min_rows,
        }
        now = self.clock()
        row = {
            "name": name,
            "deployment": deployment,
            "reference": dv.ref,
            "checks": json.dumps(chosen),
            "config": json.dumps(config, allow_nan=False),
            "every_ms": every_ms,
            "window_ms": window_ms,
            "enabled": bool(enabled),
            "next_run_time": _next_slot(now, every_ms) if enabled else None,
            "description": str(description or ""),
            "creation_time": now,
            "last_updated_time": now,
        }
        with self.db.read() as conn:
            if conn.execute(sa.select(M.c.name).where(M.c.name == name)).first():
                raise Conflict(f"monitor {name!r} already exists: delete it first, or pick a name")
        monitor = _monitor(_Obj(row))
        # Fit (or read) the stored references now: a reference that cannot be fitted
        # fails here, and the first run reads the window only.
        self.checks.references(monitor, dv)
        try:
            with self.db.write() as conn:
                conn.execute(M.insert().values(**row))
        except sa.exc.IntegrityError:
            raise Conflict(f"monitor {name!r} already exists: delete it first") from None
        return self.get(name)

    def get(self, name: str) -> Monitor:
        with self.db.read() as conn:
            r = conn.execute(sa.select(M).where(M.c.name == name)).first()
            if r is None:
                raise NotFound(f"monitor {name!r} does not exist (opsloop monitor ls lists them)")
            last = conn.execute(
                sa.select(RUNS)
                .where(RUNS.c.monitor == name)
                .order_by(RUNS.c.run_id.desc())
                .limit(1)
            ).first()
        return _monitor(r, _run(last) if last else None)

    def list_monitors(self, deployment: str | None = None) -> list[Monitor]:
        q = sa.select(M).order_by(M.c.name)
        if deployment is not None:
            q = q.where(M.c.deployment == deployment)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
            last: dict[str, MonitorRun] = {}
            latest = (
                sa.select(RUNS.c.monitor, sa.func.max(RUNS.c.run_id).label("run_id"))
                .group_by(RUNS.c.monitor)
                .subquery()
            )
            for r in conn.execute(sa.select(RUNS).join(latest, RUNS.c.run_id == latest.c.run_id)):
                last[r.monitor] = _run(r)
        return [_monitor(r, last.get(r.name)) for r in rows]

    def pause(self, name: str) -> Monitor:
        """Stop running on schedule (``run`` still runs it)."""
        self._set(name, enabled=False, next_run_time=None)
        return self.get(name)

    def resume(self, name: str) -> Monitor:
        """Run on schedule again, from the next slot on (paused slots are not caught up)."""
        m = self.get(name)
        self._set(name, enabled=True, next_run_time=_next_slot(self.clock(), m.every_ms))
        return self.get(name)

    def _set(self, name: str, **values: Any) -> None:
        with self.db.write() as conn:
            n = conn.execute(
                M.update().where(M.c.name == name).values(last_updated_time=self.clock(), **values)
            ).rowcount
        if n != 1:
            raise NotFound(f"monitor {name!r} does not exist (opsloop monitor ls lists them)")

    def delete(self, name: str) -> None:
        """Delete a monitor with its runs and results (its events stay: they happened)."""
        with self.db.write() as conn:
            if conn.execute(sa.select(M.c.name).where(M.c.name == name)).first() is None:
                raise NotFound(f"monitor {name!r} does not exist (opsloop monitor ls lists them)")
            conn.execute(R.delete().where(R.c.monitor == name))
            conn.execute(RUNS.delete().where(RUNS.c.monitor == name))
            conn.execute(M.delete().where(M.c.name == name))

    # -- results --------------------------------------------------------------------------

    def runs(self, name: str, limit: int = 50, status: str | None = None) -> list[MonitorRun]:
        """A monitor's runs, newest first."""
        self.get(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100_000:
            raise InvalidInput(f"limit must be between 1 and 100000, got {limit!r}")
        q = sa.select(RUNS).where(RUNS.c.monitor == name)
        if status is not None:
            if status not in (OK, ALERT, NO_DATA, FAILED):
                raise InvalidInput(f"status is one of ok, alert, no_data, failed; got {status!r}")
            q = q.where(RUNS.c.status == status)
        with self.db.read() as conn:
            rows = conn.execute(q.order_by(RUNS.c.run_id.desc()).limit(limit)).all()
        return [_run(r) for r in rows]

    def result_rows(
        self,
        name: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        check: str | None = None,
        signal: str | None = None,
        alerts_only: bool = False,
        limit: int = 100_000,
    ) -> list[dict[str, Any]]:
        """The time series as dicts, oldest window first (see :meth:`results`)."""
        self.get(name)
        if check is not None and check not in CHECKS:
            raise InvalidInput(f"unknown check {check!r}; the checks: {', '.join(CHECKS)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 1_000_000:
            raise InvalidInput(f"limit must be between 1 and 1000000, got {limit!r}")
        q = (
            sa.select(
                RUNS.c.run_id,
                RUNS.c.window_start,
                RUNS.c.window_end,
                RUNS.c.status,
                RUNS.c.num_rows,
                R.c.check,
                R.c.signal,
                R.c.metric,
                R.c.value,
                R.c.p_value,
                R.c.threshold,
                R.c.alert,
                R.c.detail,
            )
            .join(RUNS, RUNS.c.run_id == R.c.run_id)
            .where(R.c.monitor == name)
        )
        if since_ms is not None:
            q = q.where(R.c.window_end >= int(since_ms))
        if until_ms is not None:
            q = q.where(R.c.window_end < int(until_ms))
        if check is not None:
            q = q.where(R.c.check == check)
        if signal is not None:
            q = q.where(R.c.signal == signal)
        if alerts_only:
            q = q.where(R.c.alert.is_(True))
        q = q.order_by(R.c.window_end, R.c.run_id, R.c.result_id).limit(limit)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "run_id": int(r.run_id),
                "window_start": int(r.window_start),
                "window_end": int(r.window_end),
                "status": r.status,
                "rows": int(r.num_rows),
                "check": r.check,
                "signal": r.signal,
                "metric": r.metric,
                "value": r.value,
                "p_value": r.p_value,
                "threshold": r.threshold,
                "alert": bool(r.alert),
                "detail": json.loads(r.detail) if r.detail else None,
            }
            for r in rows
        ]

    def results(self, name: str, **filters: Any) -> pd.DataFrame:
        """The time series: one row per run, check and signal - ``window_start``,
        ``window_end`` (UTC datetimes), ``run_id``, ``status``, ``rows``, ``check``,
        ``signal`` (a column, a metric, a quality check), ``metric`` (the test or metric),
        ``value``, ``p_value``, ``threshold``, ``alert``, ``detail``. Filters: ``since_ms``,
        ``until_ms`` (on the window's end), ``check``, ``signal``, ``alerts_only``."""
        import pandas as pd

        rows = self.result_rows(name, **filters)
        cols = [
            "run_id",
            "window_start",
            "window_end",
            "status",
            "rows",
            "check",
            "signal",
            "metric",
            "value",
            "p_value",
            "threshold",
            "alert",
            "detail",
        ]
        df = pd.DataFrame(rows, columns=cols)
        for c in ("window_start", "window_end"):
            df[c] = pd.to_datetime(df[c].astype("int64"), unit="ms", utc=True)
        df["value"] = df["value"].astype("float64")
        df["p_value"] = df["p_value"].astype("float64")
        df["threshold"] = df["threshold"].astype("float64")
        df["alert"] = df["alert"].astype(bool)
        return df

    # -- running --------------------------------------------------------------------------

    def run(
        self, name: str, *, at: int | None = None, window: str | float | None = None
    ) -> MonitorRun:
        """Run a monitor now over the window that ends ``at`` (ms; default now) and is
        ``window`` long (default: the monitor's), store the results and raise its alert
        event if any. A run that fails (the reference or the deployment is gone) is
        stored as ``failed`` with the reason."""
        m = self.get(name)
        if window is not None:
            window_ms = parse_duration(window, "window")
            if window_ms > MAX_SPAN_MS:
                raise InvalidInput("a window is limited to 366 days")
            m = replace(m, window_ms=window_ms)
        end = self.clock() if at is None else int(at)
        return self._run_and_store(m, end, MANUAL, None)

    def run_due(self, now: int | None = None) -> list[MonitorRun]:
        """Run every enabled monitor whose next slot has come, each once for its newest
        slot; what the scheduler does each tick."""
        at = self.clock() if now is None else int(now)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(M)
                .where(M.c.enabled.is_(True) & (M.c.next_run_time <= at))
                .order_by(M.c.next_run_time, M.c.name)
            ).all()
        out = []
        for r in rows:
            m = _monitor(r)
            assert m.next_run_time is not None
            slot = m.next_run_time + (at - m.next_run_time) // m.every_ms * m.every_ms
            try:
                run = self._run_and_store(m, slot, SCHEDULED, m.next_run_time)
            except _Taken:
                continue
            except Exception:
                log.exception("monitor %s: its run at %s failed", m.name, iso(slot))
                continue
            if run is not None:
                out.append(run)
        return out

    def _run_and_store(self, m: Monitor, end: int, trigger: str, due: int | None) -> MonitorRun:
        start = end - m.window_ms
        run_time = self.clock()
        try:
            outcome = self.checks.evaluate(m, start, end)
            alerts = bool(outcome.reasons)
            if outcome.rows == 0 or outcome.summary.get("no_data"):
                status = NO_DATA
                message = outcome.summary.get("no_data") or "no data: no predictions in the window"
            elif alerts:
                status = ALERT
                message = "; ".join(outcome.reasons)
            else:
                status = OK
                message = "no signal crossed its threshold"
        except Exception as exc:
            log.warning("monitor %s: run failed: %s", m.name, exc)
            outcome = Outcome()
            status = FAILED
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        if outcome.notes:
            outcome.summary["notes"] = outcome.notes
        with self.db.write() as conn:
            if due is not None:
                moved = conn.execute(
                    M.update()
                    .where((M.c.name == m.name) & (M.c.next_run_time == due))
                    .values(next_run_time=end + m.every_ms)
                ).rowcount
                if moved != 1:
                    raise _Taken()  # another scheduler stored this slot; roll back
            event_id = None
            if status == ALERT:
                payload = {
                    "monitor": m.name,
                    "deployment": m.deployment,
                    "reference": m.reference,
                    "window": {
                        "start": iso(start),
                        "end": iso(end),
                        "start_ms": start,
                        "end_ms": end,
                    },
                    "rows": outcome.rows,
                    "drifted_columns": [],  # always there: the input columns that drifted
                    **outcome.payload,
                }
                event_id = record_event_in(
                    conn,
                    event_row(
                        "monitor.alert",
                        f"monitor {m.name}: {message}",
                        source=f"monitor:{m.name}",
                        subject=m.deployment,
                        severity=outcome.severity,
                        payload=payload,
                        time_ms=run_time,
                    ),
                )
            run_row = {
                "monitor": m.name,
                "trigger": trigger,
                "run_time": run_time,
                "window_start": start,
                "window_end": end,
                "status": status,
                "num_rows": outcome.rows,
                "message": message,
                "event_id": event_id,
                "summary": json.dumps(jsonable(outcome.summary), allow_nan=False),
            }
            key = conn.execute(RUNS.insert().values(**run_row)).inserted_primary_key
            assert key is not None
            run_id = int(key[0])
            if outcome.results:
                conn.execute(
                    R.insert(),
                    [
                        {**res, "run_id": run_id, "monitor": m.name, "window_end": end}
                        for res in outcome.results
                    ],
                )
        return MonitorRun(
            run_id,
            m.name,
            trigger,
            run_time,
            start,
            end,
            status,
            outcome.rows,
            message,
            event_id,
            json.loads(str(run_row["summary"])),
        )


class _Taken(Exception):
    """Another scheduler stored this slot first."""


class _Obj:
    def __init__(self, d: Mapping[str, Any]) -> None:
        self.__dict__.update(d)


def _next_slot(now: int, every_ms: int) -> int:
    return (now // every_ms + 1) * every_ms


def _check_name(value: object, what: str, *, strict: bool = True) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"a {what} must be a string of 1 to {MAX_NAME_LENGTH} characters, got {value!r}"
        )
    if strict and not _NAME_RE.match(value):
        raise InvalidInput(
            f"{what} {value!r} is not valid: use letters, digits, '.', '_' and '-', starting "
            "with a letter or digit"
        )
    if any(c in value for c in "\x00\n\r"):
        raise InvalidInput(f"a {what} may not contain NUL or line breaks: {value!r}")
    return value


def _deployment_known(db: Any, name: str) -> bool:
    with db.read() as conn:
        if conn.execute(sa.select(deployments.c.name).where(deployments.c.name == name)).first():
            return True
        return (
            conn.execute(
                sa.select(prediction_segments.c.segment_id)
                .where(prediction_segments.c.deployment == name)
                .limit(1)
            ).first()
            is not None
        )


# -- on the default store ---------------------------------------------------------------------


def _svc() -> MonitorService:
    from opsloop.store import default_service

    return default_service(MonitorService)


def create_monitor(name: str, *, reference: str, **options: Any) -> Monitor:
    """Create a monitor on the default store (see ``MonitorService.create``).

    Example::

        opsloop.monitoring.create_monitor(
            "churn", reference="sensors@3", every="10m", window="1h",
            performance_thresholds={"accuracy": 0.85},
        )
    """
    return _svc().create(name, reference=reference, **options)


def get_monitor(name: str) -> Monitor:
    """A monitor with its last run."""
    return _svc().get(name)


def list_monitors(deployment: str | None = None) -> list[Monitor]:
    """Every monitor (of one deployment), by name."""
    return _svc().list_monitors(deployment)


def run_monitor(name: str, *, at: Any = None, window: str | float | None = None) -> MonitorRun:
    """Run a monitor now over the window ending ``at`` (a datetime, ISO string or
    seconds since the epoch; default now), ``window`` long (``"5m"``, or seconds;
    default the monitor's window).

    Example::

        run = opsloop.monitoring.run_monitor("churn")
        run.status, run.message          # "alert", "drift in 2 input column(s): age, plan"
    """
    from opsloop.serving.predictions import to_seconds

    seconds = to_seconds(at, "at")
    return _svc().run(name, at=None if seconds is None else round(seconds * 1000), window=window)


def monitor_results(name: str, **filters: Any) -> pd.DataFrame:
    """A monitor's results as a time series (see ``MonitorService.results``).

    Example::

        df = opsloop.monitoring.monitor_results("churn", check="input_drift")
        df.pivot_table(index="window_end", columns="signal", values="value")
    """
    return _svc().results(name, **filters)


def monitor_runs(name: str, limit: int = 50) -> list[MonitorRun]:
    """A monitor's runs, newest first."""
    return _svc().runs(name, limit)


def pause_monitor(name: str) -> Monitor:
    return _svc().pause(name)


def resume_monitor(name: str) -> Monitor:
    return _svc().resume(name)


def delete_monitor(name: str) -> None:
    _svc().delete(name)
