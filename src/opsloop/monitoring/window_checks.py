"""What one monitor run checks on its window of the prediction log.

``WindowChecks(store).evaluate(monitor, start_ms, end_ms)`` reads the window (with the
labels, when the monitor measures performance), runs the monitor's checks - input and
output drift against its fitted references, data quality, measured performance, CBPE -
and returns an :class:`Outcome`: the result rows of the time series, a summary, the
reasons it alerts (empty: no alert) and the alert's payload. It stores nothing: the
monitor service does, in one transaction (``opsloop.monitoring.monitors``).

The references are fitted once per dataset version and options, on the monitor's
columns only (so that the label, prediction and score columns of a training set do not
enter the multivariate checks), and stored in the artifact store beside the drift
engine's own cache (``monitoring/references/<digest>/monitor-<key>.npz``); a process
keeps the last 16 in memory.

Example::

    out = WindowChecks(store).evaluate(monitor, start_ms, end_ms)
    out.rows, out.reasons, out.results[0]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsloop.errors import InvalidInput, NotFound
from opsloop.store.tables import MAX_NAME_LENGTH

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa

    from opsloop.data.entities import DatasetVersion
    from opsloop.monitoring.checks import DriftReport
    from opsloop.monitoring.monitors import Monitor
    from opsloop.monitoring.performance import CBPE, PerformanceResult
    from opsloop.monitoring.reference import Reference
    from opsloop.store import Store

INPUT_DRIFT = "input_drift"
OUTPUT_DRIFT = "output_drift"
QUALITY = "quality"
PERFORMANCE = "performance"
CBPE_CHECK = "cbpe"
CHECKS = (INPUT_DRIFT, OUTPUT_DRIFT, QUALITY, PERFORMANCE, CBPE_CHECK)
LABEL = "label"  # the prediction log's label column
LOG_META = ("request_id", "timestamp", "version", "latency_ms", "row", "shadow", LABEL)
CACHED = 16


def iso(ms: int | None) -> str | None:
    """A time in ms since the epoch as ISO 8601 (UTC, milliseconds)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass
class Outcome:
    """What one run found (see the module docstring)."""

    rows: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why it alerts, in words
    payload: dict[str, Any] = field(default_factory=dict)
    severity: str = "warning"

    def add(
        self,
        check: str,
        signal: str,
        metric: str,
        value: Any = None,
        *,
        p_value: Any = None,
        threshold: Any = None,
        alert: bool = False,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.results.append(
            {
                "check": check,
                "signal": str(signal)[:MAX_NAME_LENGTH],
                "metric": str(metric)[:64],
                "value": num(value),
                "p_value": num(p_value),
                "threshold": num(threshold),
                "alert": bool(alert),
                "detail": json.dumps(jsonable(dict(detail)), allow_nan=False) if detail else None,
            }
        )


def num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None if v is None else float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        with contextlib.suppress(Exception):
            v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, str | int | bool) or v is None:
        return v
    return str(v)


def dataset_version(store: Store, reference: object) -> DatasetVersion:
    """The dataset version a monitor's reference names (InvalidInput, NotFound)."""
    from opsloop.data.service import DatasetService

    if not isinstance(reference, str) or not reference.strip():
        raise InvalidInput(
            f"a reference is a registered dataset version like 'sensors@3', got {reference!r}"
        )
    return DatasetService(store).get_version(reference)


def read_table(store: Store, dv: DatasetVersion) -> pa.Table:
    from opsloop.data.service import DatasetService

    return DatasetService(store).read_table(dv)


class WindowChecks:
    """Runs a monitor's checks on a window (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # fitted references and calibrations, by artifact path / key (small, per process)
        self._refs: OrderedDict[str, Any] = OrderedDict()

    def evaluate(self, m: Monitor, start: int, end: int) -> Outcome:
        """Read the window ``[start, end)`` (ms) of the monitor's deployment and run its
        checks; an empty window (or one under ``min_rows``) sets ``summary["no_data"]``."""
        from opsloop.serving.predictions import PredictionLog

        cfg = m.config
        out = Outcome()
        needs_labels = PERFORMANCE in m.checks
        window = PredictionLog(self.store).read(
            m.deployment, since=start / 1000.0, until=end / 1000.0, with_labels=needs_labels
        )
        out.rows = len(window)
        if not len(window):
            out.summary["no_data"] = (
                f"no data: no predictions of {m.deployment} from {iso(start)} to {iso(end)}"
            )
            return out
        if len(window) < int(cfg.get("min_rows") or 1):
            out.summary["no_data"] = (
                f"no data: {len(window)} prediction(s) in the window; the monitor needs "
                f"at least {cfg['min_rows']}"
            )
            return out
        dv = dataset_version(self.store, m.reference)
        refs = self.references(m, dv)
        pred = cfg["prediction_column"]
        if INPUT_DRIFT in m.checks:
            self._drift(out, INPUT_DRIFT, refs["inputs"], window, cfg["features"], cfg, True)
        if OUTPUT_DRIFT in m.checks:
            if pred in window.columns:
                self._drift(out, OUTPUT_DRIFT, refs["outputs"], window, [pred], cfg, False)
            else:
                out.notes.append(f"output_drift: the log has no column {pred!r}")
        if QUALITY in m.checks:
            self._quality(out, m, dv, window)
        if PERFORMANCE in m.checks:
            self._performance(out, m, window)
        if CBPE_CHECK in m.checks:
            self._cbpe(out, m, dv, window)
        return out

    def _drift(
        self,
        out: Outcome,
        check: str,
        ref: Reference,
        window: pd.DataFrame,
        columns: list[str],
        cfg: Mapping[str, Any],
        multivariate: bool,
    ) -> None:
        from opsloop.monitoring.checks import drift

        present = [c for c in columns if c in window.columns]
        mv: bool | tuple[str, ...] = bool(multivariate and cfg.get("multivariate", True))
        report: DriftReport = drift(
            ref,
            window[present],
            columns=columns,
            tests=cfg.get("drift_tests") if check == INPUT_DRIFT else None,
            threshold=cfg.get("drift_threshold"),
            multivariate=mv,
        )
        signal_cols: list[str] = []
        for name, e in report.columns.items():
            alerts = [a for a in report.alerts if a.startswith(f"{name}: ")]
            if alerts and name not in signal_cols:
                signal_cols.append(name)
            out.add(
                check,
                name,
                e.test or ("error" if e.error else "none"),
                e.statistic,
                p_value=e.p_value_adjusted if e.p_value_adjusted is not None else e.p_value,
                threshold=e.threshold,
                alert=bool(e.drifted) or bool(alerts),
                detail={
                    "drifted": e.drifted,
                    "p_value_raw": e.p_value,
                    "threshold_on": e.threshold_on,
                    "n_reference": e.n_reference,
                    "n_current": e.n_current,
                    "signals": e.signals,
                    "alerts": alerts,
                    "error": e.error,
                    "note": e.note,
                },
            )
        mv_drifted = []
        for kind, res in report.multivariate.items():
            if res.get("drifted"):
                mv_drifted.append(kind)
            out.add(
                check,
                f"multivariate:{kind}",
                kind,
                res.get("statistic"),
                p_value=res.get("p_value"),
                threshold=res.get("threshold"),
                alert=bool(res.get("drifted")),
                detail=res,
            )
        drifted = report.drifted_columns
        table_alerts = [
            a for a in report.alerts if not any(a.startswith(f"{c}: ") for c in report.columns)
        ]
        out.summary[check] = {
            "drifted_columns": drifted,
            "share_drifted": report.share_drifted,
            "dataset_drift": report.dataset_drift,
            "tested": report.tested,
            "alerts": report.alerts,
            "multivariate_drifted": mv_drifted,
        }
        if not (drifted or signal_cols or mv_drifted or table_alerts):
            return
        what = "input" if check == INPUT_DRIFT else "output"
        if drifted:
            out.reasons.append(f"drift in {len(drifted)} {what} column(s): {', '.join(drifted)}")
        others = [c for c in signal_cols if c not in drifted]
        if others:
            out.reasons.append(f"{what} data signals in {', '.join(others)}")
        if mv_drifted and not drifted:
            out.reasons.append(f"multivariate {what} drift ({', '.join(mv_drifted)})")
        if report.dataset_drift:
            out.severity = "critical"
        stats = {
            name: {
                "test": e.test,
                "statistic": e.statistic,
                "p_value": e.p_value_adjusted if e.p_value_adjusted is not None else e.p_value,
                "threshold": e.threshold,
                "drifted": e.drifted,
            }
            for name, e in report.columns.items()
            if e.drifted or name in signal_cols
        }
        out.payload[check] = {
            "drifted_columns": drifted,
            "signal_columns": others,
            "share_drifted": report.share_drifted,
            "alerts": report.alerts,
            "multivariate": {k: report.multivariate[k] for k in mv_drifted},
            "statistics": stats,
        }
        if check == INPUT_DRIFT:
            out.payload["drifted_columns"] = drifted

    def _quality(self, out: Outcome, m: Monitor, dv: DatasetVersion, window: pd.DataFrame) -> None:
        from opsloop.monitoring.quality import checks_of, reference_checks, window_quality

        specs = m.config.get("quality_checks")
        if specs is not None:
            checks = checks_of(specs)
        else:
            checks, notes = reference_checks(dv, window.columns)
            out.notes.extend(f"quality: {n}" for n in notes)
        if not checks:
            out.notes.append(
                f"quality: no checks to run (the reference {dv.ref} carries no validation "
                "report; give quality_checks)"
            )
            return
        report = window_quality(window, checks)
        failed: list[dict[str, Any]] = []
        for r in report.results:
            out.add(
                QUALITY,
                r.name,
                r.check,
                r.failing_share if r.failing_share is not None else (0.0 if r.passed else 1.0),
                alert=not r.passed,
                detail={"message": r.message, "error": r.error, "failing_rows": r.failing_rows},
            )
            if not r.passed:
                failed.append({"check": r.name, "message": r.message, "error": r.error})
        out.summary[QUALITY] = {"checks": len(report.results), "failed": failed}
        if failed:
            out.reasons.append(
                f"{len(failed)} quality check(s) failed: {', '.join(str(f['check']) for f in failed)}"
            )
            out.payload[QUALITY] = {"failed": failed}

    def _perf_rows(self, out: Outcome, check: str, result: PerformanceResult, m: Monitor) -> None:
        from opsloop.monitoring.performance import breaches

        bounds = m.config.get("performance_thresholds") or {}
        past = breaches(result, bounds)
        for metric, value in result.metrics.items():
            out.add(
                check,
                metric,
                metric,
                value,
                threshold=bounds.get(metric),
                alert=metric in past,
                detail={"reason": result.reasons.get(metric)} if metric in result.reasons else None,
            )
        out.summary[check] = result.to_dict()
        if past:
            kind = "estimated" if result.estimated else "measured"
            out.reasons.append(
                f"{kind} "
                + ", ".join(
                    f"{k} {v['value']:.4g} past {v['threshold']:.4g}" for k, v in past.items()
                )
            )
            out.payload[check] = {"breaches": past, "metrics": result.to_dict()["metrics"]}

    def _performance(self, out: Outcome, m: Monitor, window: pd.DataFrame) -> None:
        from opsloop.monitoring.performance import performance

        cfg = m.config
        pred, score = cfg["prediction_column"], cfg.get("score_column")
        if LABEL not in window.columns or window[LABEL].isna().all():
            out.notes.append("performance: no labels in the window yet")
            return
        if pred not in window.columns:
            out.notes.append(f"performance: the log has no column {pred!r}")
            return
        result = performance(
            window[LABEL],
            window[pred],
            window[score] if score and score in window.columns else None,
            task=cfg.get("task"),
            positive=cfg.get("positive", 1),
        )
        self._perf_rows(out, PERFORMANCE, result, m)

    def _cbpe(self, out: Outcome, m: Monitor, dv: DatasetVersion, window: pd.DataFrame) -> None:
        cfg = m.config
        score, pred = cfg["score_column"], cfg["prediction_column"]
        if score not in window.columns:
            out.notes.append(f"cbpe: the log has no score column {score!r}")
            return
        cbpe = self._calibration(m, dv)
        y_pred = window[pred] if pred in window.columns and pred != score else None
        result = cbpe.estimate(window[score], y_pred)
        self._perf_rows(out, CBPE_CHECK, result, m)

    # -- references -----------------------------------------------------------------------

    def _remember(self, key: str, value: Any) -> Any:
        self._refs[key] = value
        self._refs.move_to_end(key)
        while len(self._refs) > 16:
            self._refs.popitem(last=False)
        return value

    def references(self, m: Monitor, dv: DatasetVersion) -> dict[str, Reference]:
        """The monitor's fitted references (inputs; outputs), from the artifact store's
        cache, or fitted on the dataset version and stored there."""
        from opsloop.monitoring.reference import Reference, cache_path

        cfg = m.config
        wanted: dict[str, tuple[list[str], bool]] = {}
        if INPUT_DRIFT in m.checks:
            wanted["inputs"] = (list(cfg["features"]), bool(cfg.get("multivariate", True)))
        if OUTPUT_DRIFT in m.checks:
            wanted["outputs"] = ([cfg["prediction_column"]], False)
        learn = cfg.get("drift_threshold") == "learned"
        tests = cfg.get("drift_tests")
        out: dict[str, Reference] = {}
        table: pa.Table | None = None
        for what, (columns, mv) in wanted.items():
            options = {"monitor": 1, "columns": columns, "mv": mv, "learn": learn, "tests": tests}
            key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
            path = cache_path(dv.digest, f"monitor-{key}")
            if path in self._refs:
                self._refs.move_to_end(path)
                out[what] = self._refs[path]
                continue
            try:
                ref = Reference.from_bytes(self.store.artifacts.get_bytes(path))
            except NotFound:
                if table is None:
                    table = read_table(self.store, dv)
                ref = Reference.fit(
                    table.select(columns),
                    multivariate=mv,
                    learn_thresholds=learn,
                    tests=tests,
                )
                ref.source = {"dataset": dv.ref, "digest": dv.digest, "columns": columns}
                self.store.artifacts.put_bytes(path, ref.to_bytes())
            out[what] = self._remember(path, ref)
        if CBPE_CHECK in m.checks:
            self._calibration(m, dv, table)
        return out

    def _calibration(self, m: Monitor, dv: DatasetVersion, table: pa.Table | None = None) -> CBPE:
        from opsloop.monitoring.performance import CBPE

        cfg = m.config
        label, score, pred = cfg["label_column"], cfg["score_column"], cfg["prediction_column"]
        key = f"cbpe:{dv.digest}:{label}:{score}:{pred}:{json.dumps(cfg.get('positive'))}"
        if key in self._refs:
            cached: CBPE = self._refs[key]
            return cached
        if table is None:
            table = read_table(self.store, dv)
        if label not in table.column_names or score not in table.column_names:
            raise InvalidInput(f"CBPE: the reference {dv.ref} has no column {label!r} or {score!r}")
        cbpe = CBPE.fit(
            table[label].to_pylist(), table[score].to_pylist(), positive=cfg.get("positive", 1)
        )
        return self._remember(key, cbpe)  # type: ignore[no-any-return]
