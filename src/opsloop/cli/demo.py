"""``opsloop demo``: the main job, on the embedded store, with no set-up.

One pipeline, every step a tracked run: ingest (scikit-learn's breast-cancer data) →
validate (checks; the data registered as a dataset version with its report) → features
(a split, both parts registered) → train (a sweep: one trial per candidate model, each
logging its params, learning curve, scores and a report from inside the step) →
evaluate (the best by ROC AUC) → register (the model registered from that step's run,
the ``production`` alias moved to it). The model is then loaded back through the alias
to check its predictions, deployed (a deployment following the alias), served by
``opsloop serve`` in a process of its own, sent single-row requests (latency
percentiles printed), and every request is read back from the prediction log. A second
demo run serves every pipeline step from the cache. Later parts of opsloop extend it
stage by stage.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from opsloop.pipelines import pipeline, step

console = Console()
EXPERIMENT = "demo-breast-cancer"
MODEL_NAME = "demo-classifier"
DATASET = "demo-breast-cancer"
DEPLOYMENT = "demo-classifier"
REQUESTS = 200


def _candidates() -> dict[str, tuple[str, dict[str, Any], Any]]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out: dict[str, tuple[str, dict[str, Any], Any]] = {}
    for c in (0.01, 1.0):
        out[f"logreg-{c}"] = (
            "logreg",
            {"model": "logistic_regression", "C": c},
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)),
        )
    out["forest-100"] = (
        "forest",
        {"model": "random_forest", "n_estimators": 100, "max_depth": 6},
        RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0, n_jobs=1),
    )
    out["boosting-100"] = (
        "boosting",
        {"model": "gradient_boosting", "n_estimators": 100, "learning_rate": 0.1},
        GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, random_state=0),
    )
    return out


@step
def ingest() -> pd.DataFrame:
    """The raw table: scikit-learn's breast-cancer data with its target column."""
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


@step
def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Stop the pipeline here if the data is not what training expects; register it."""
    import opsloop
    from opsloop.data import validation as v

    checks = [
        v.row_count(min=100),
        v.not_null("target"),
        v.accepted_values("target", {0, 1}),
        v.in_range("mean radius", min=0, max=100),
        *(v.max_missing(c, 0.01) for c in df.columns),
    ]
    report = v.validate(df, checks)
    print(
        f"validation: {len(report.results) - len(report.failures)} of {len(report.results)} checks passed"
    )
    report.raise_for_failures()
    dv = opsloop.data.register(df, name=DATASET, description="sklearn breast_cancer")
    opsloop.data.set_validation_report(dv.name, report.to_dict(), dv.version)
    return df


@step(outputs=("train", "test"))
def features(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split, both parts registered as datasets."""
    from sklearn.model_selection import train_test_split

    import opsloop

    train_df, test_df = train_test_split(
        df, test_size=test_size, random_state=seed, stratify=df["target"]
    )
    train_df, test_df = train_df.reset_index(drop=True), test_df.reset_index(drop=True)
    opsloop.data.register(train_df, name=f"{DATASET}-train")
    opsloop.data.register(test_df, name=f"{DATASET}-test")
    return train_df, test_df


@step
def train(train_df: pd.DataFrame, test_df: pd.DataFrame, candidate: str) -> dict[str, Any]:
    """Fit one candidate and score it on the test part; a trial of the sweep, its run
    gets the candidate's params, its learning curve, its scores and a report."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    import opsloop

    label, params, model = _candidates()[candidate]
    x, y = train_df.drop(columns=["target"]), train_df["target"]
    model.fit(x, y)
    xt, yt = test_df.drop(columns=["target"]), test_df["target"]
    proba = model.predict_proba(xt)[:, 1]
    pred = (proba >= 0.5).astype(int)
    opsloop.log_params(params)
    opsloop.set_tag("family", label)
    if hasattr(model, "staged_predict_proba"):
        for step_no, p in enumerate(model.staged_predict_proba(xt)):
            opsloop.log_metric("test_log_loss", float(log_loss(yt, p)), step=step_no)
    scores = {
        "accuracy": float(accuracy_score(yt, pred)),
        "f1": float(f1_score(yt, pred)),
        "roc_auc": float(roc_auc_score(yt, proba)),
        "log_loss": float(log_loss(yt, np.c_[1 - proba, proba])),
    }
    opsloop.log_metrics(scores)
    opsloop.log_text(json.dumps({"params": params, "metrics": scores}, indent=2), "report.json")
    return {"candidate": candidate, "label": label, "params": params, "model": model, **scores}


@step
def evaluate(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Pick the best candidate: by ROC AUC, then accuracy."""
    best = max(trials, key=lambda t: (t["roc_auc"], t["accuracy"]))
    print(f"best: {best['candidate']} (ROC AUC {best['roc_auc']:.4f})")
    return best


@step
def register(best: dict[str, Any], test_df: pd.DataFrame, trials: int) -> dict[str, Any]:
    """Register the best model (its run: this step's) and point ``production`` at it."""
    import opsloop

    mv = opsloop.log_model(
        best["model"],
        MODEL_NAME,
        input_example=test_df.drop(columns=["target"]).iloc[:5],
        description=f"best of {trials} candidates by ROC AUC ({best['roc_auc']:.4f})",
    )
    opsloop.set_alias(MODEL_NAME, "production", mv.version)
    return {"version": mv.version, "flavor": mv.flavor, "run_id": mv.run_id}


@pipeline(name="demo-training", experiment=EXPERIMENT)
def training(test_size: float = 0.25, seed: int = 42) -> Any:
    """ingest → validate → features → train (a sweep over the candidates) → evaluate →
    register."""
    import opsloop

    train_df, test_df = features(validate(ingest()), test_size=test_size, seed=seed)
    names = list(_candidates())
    trials = opsloop.sweep(train, {"candidate": names}, train_df=train_df, test_df=test_df)
    return register(evaluate(trials), test_df, trials=len(names))


def run_demo() -> dict[str, Any]:
    import numpy as np

    import opsloop
    from opsloop.core.config import Settings
    from opsloop.pipelines import run

    settings = Settings.from_env()
    t0 = time.perf_counter()
    built = run(training, {"test_size": 0.25, "seed": 42}, executor="inline")
    hits = sum(1 for s in built.steps.values() if s.cache_hit)
    test_df = built.output("features", "test")
    x_test = test_df.drop(columns=["target"])
    best = built.output("evaluate")
    registered = built.output("register")
    trials = [
        (name, built.output(name), s)
        for name, s in built.steps.items()
        if name.startswith("train[")
    ]
    datasets = {
        key: opsloop.data.get_version(name)
        for key, name in (
            ("raw", DATASET),
            ("train", f"{DATASET}-train"),
            ("test", f"{DATASET}-test"),
        )
    }
    loaded = opsloop.load_model(f"models:/{MODEL_NAME}@production")
    served = np.asarray(loaded.predict(x_test))
    agree = float((served.ravel() == best["model"].predict(x_test)).mean())
    traffic = _serve_traffic(x_test, loaded)
    monitored = _monitor(datasets["train"].ref, list(x_test.columns), traffic["spans"])
    fault = traffic["fault"]
    found = _detect(traffic["since"], fault["start_ms"], str(traffic["instance"]))
    elapsed = time.perf_counter() - t0

    table = Table(title=f"opsloop demo — experiment {EXPERIMENT!r}")
    for col in ("run", "model", "params", "accuracy", "f1", "roc_auc"):
        table.add_column(col, justify="right" if col in ("accuracy", "f1", "roc_auc") else "left")
    for _name, t, s in sorted(trials, key=lambda x: -x[1]["roc_auc"]):
        mark = " ★" if t["candidate"] == best["candidate"] else ""
        shown = {k: val for k, val in t["params"].items() if k != "model"}
        table.add_row(
            (s.run_id or "")[:8] + mark,
            t["label"],
            ", ".join(f"{k}={val}" for k, val in shown.items()),
            f"{t['accuracy']:.4f}",
            f"{t['f1']:.4f}",
            f"{t['roc_auc']:.4f}",
        )
    console.print(
        f"pipeline [bold]{training.name}[/bold] (ingest → validate → features → train x"
        f"{len(trials)} → evaluate → register): {len(built.steps)} steps, {hits} from the "
        f"cache, {built.duration:.2f} s"
    )
    console.print(
        "datasets: " + ", ".join(f"{d.ref} ({d.num_rows} rows)" for d in datasets.values())
    )
    console.print(table)
    how = "served from the cache" if built.steps["register"].cache_hit else "registered"
    console.print(
        f"{how}: [bold]{MODEL_NAME}[/bold] version {registered['version']} "
        f"({registered['flavor']}) from step run {str(registered['run_id'])[:8]}; alias "
        f"[bold]production[/bold] → v{registered['version']}"
    )
    console.print(
        f"loaded models:/{MODEL_NAME}@production and predicted {len(served)} rows "
        f"({agree:.0%} agree with the trained model)"
    )
    lat = traffic["latency_ms"]
    console.print(
        f"deployed [bold]{DEPLOYMENT}[/bold] (follows {MODEL_NAME}@production), served by "
        f"`opsloop serve {DEPLOYMENT}`"
    )
    console.print(
        f"{traffic['steady_requests']} single-row requests to /invocations: p50 {lat[50]:.2f} "
        f"ms, p95 {lat[95]:.2f} ms, p99 {lat[99]:.2f} ms; {traffic['agree']:.0%} answers as "
        "the model"
    )
    shifted = ", ".join(f"{c} x{f}" for c, f in SHIFTED.items())
    console.print(
        f"then {traffic['requests'] - traffic['steady_requests']} more with inputs shifted ({shifted})"
    )
    console.print(
        f"prediction log: {traffic['logged']} rows in the artifact store under "
        f"predictions/{DEPLOYMENT}/ — opsloop.serving.predictions({DEPLOYMENT!r}) reads them"
    )
    for phase, r in monitored:
        drifted = (r.summary.get("input_drift") or {}).get("drifted_columns") or []
        if r.alerted and drifted:
            what = (
                f"[bold red]drift[/bold red] in {len(drifted)} column(s): {', '.join(drifted)} "
                f"(alert event #{r.event_id})"
            )
        else:
            what = f"{r.status}: {r.message}"
        console.print(f"monitor {r.monitor!r} over the {phase} window ({r.rows} rows): {what}")
    console.print(
        f"latency drill: fault_delay_ms={FAULT_MS:g} on {DEPLOYMENT!r} (revision "
        f"{fault['revision']}, swapped in without a restart), {fault['requests']} requests: "
        f"p50 {fault['latency_p50_ms']:.2f} ms; then a burst of new error lines in its log"
    )
    console.print(_found_line(found, fault["start_ms"]))
    console.print(f"metadata store:  {settings.redacted_database_url()}")
    console.print(f"artifact store:  {settings.artifacts_url}")
    console.print(
        f"done in {elapsed:.1f} s — look around with `opsloop runs ls -e {EXPERIMENT}` or `opsloop server`"
    )
    return {
        "version": registered["version"],
        "best_run": next(s.run_id for _n, t, s in trials if t["candidate"] == best["candidate"]),
        "agree": agree,
        "runs": len(trials),
        "cache_hits": hits,
        "traffic": traffic,
        "monitor": {phase: r.to_dict() for phase, r in monitored},
        "detected": {k: v for k, v in found.items() if k not in ("latency_first", "log_first")},
    }


SHIFTED = {"mean radius": 1.3, "mean texture": 1.4, "worst area": 1.6}


def _phases(x_test: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The traffic, in phases: requests like the test set, then the same requests with
    some inputs shifted (a sensor recalibrated upstream: the values scaled)."""
    rows = x_test.iloc[[i % len(x_test) for i in range(REQUESTS)]].reset_index(drop=True)
    shifted = rows.copy()
    for column, factor in SHIFTED.items():
        shifted[column] = shifted[column] * factor
    return [("steady", rows), ("shifted", shifted)]


def _serve_traffic(x_test: pd.DataFrame, model: Any) -> dict[str, Any]:
    """Deploy the production model (once), serve it with ``opsloop serve`` in a process of
    its own, send single-row requests phase by phase, stop it (SIGTERM flushes the
    prediction log), and read the log back."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    from datetime import UTC, datetime

    import httpx
    import numpy as np

    from opsloop import serving
    from opsloop.errors import NotFound

    try:
        serving.get_deployment(DEPLOYMENT)
    except NotFound:
        serving.deploy(
            DEPLOYMENT,
            f"models:/{MODEL_NAME}@production",
            settings={"log_flush_interval_s": 1.0},
            reason="opsloop demo",
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    since = datetime.now(UTC)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsloop",
            "serve",
            DEPLOYMENT,
            "--port",
            str(port),
            "--poll-interval",
            "0.2",
        ],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    columns = list(x_test.columns)
    phases = _phases(x_test)
    spans: dict[str, tuple[float, float]] = {}
    latencies: dict[str, list[float]] = {}
    answers: dict[str, list[Any]] = {}
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            while True:
                if proc.poll() is not None:
                    err = proc.stderr.read() if proc.stderr is not None else ""
                    raise RuntimeError(f"opsloop serve exited: {err}")
                try:
                    if client.get(f"{url}/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("opsloop serve did not become ready in 60 s")
                time.sleep(0.1)
            for name, frame in phases:
                time.sleep(0.02)  # phases do not share a millisecond in the log
                t_start = time.time()
                latencies[name], answers[name] = [], []
                for row in frame.to_numpy().tolist():
                    body = {"dataframe_split": {"columns": columns, "data": [row]}}
                    t = time.perf_counter()
                    r = client.post(f"{url}/invocations", json=body)
                    latencies[name].append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                    answers[name].append(r.json()["predictions"][0])
                time.sleep(0.02)
                spans[name] = (t_start, time.time())
            fault = _fault_drill(client, url, columns, phases[0][1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    steady = phases[0][1]
    want = np.asarray(model.predict(steady)).ravel()
    agree = float((np.asarray(answers["steady"]).ravel() == want).mean())
    logged = len(serving.predictions(DEPLOYMENT, since=since))
    pct = np.percentile(latencies["steady"], [50, 95, 99])
    return {
        "requests": sum(len(f) for _n, f in phases),
        "steady_requests": len(steady),
        "latency_ms": {50: float(pct[0]), 95: float(pct[1]), 99: float(pct[2])},
        "agree": agree,
        "logged": logged,
        "spans": spans,
        "fault": fault,
        "since": since,
        "instance": proc.pid,
    }


FAULT_MS = 100.0  # the latency drill: added to every predict call
FAULT_REQUESTS = 40
LOG_BATCH = 50  # lines per POST a log shipper would send


def _served_revision(client: Any, url: str) -> int:
    meta = client.get(f"{url}/v2/models/{DEPLOYMENT}").json()
    return int(meta["parameters"]["revision"])


def _switch(client: Any, url: str, delay: float | None, reason: str) -> int:
    """Set (or with None, unset) the deployment's ``fault_delay_ms`` and wait until the
    server serves the new revision (it re-resolves the deployment every 0.2 s here)."""
    from opsloop import serving

    d = serving.update_deployment(
        DEPLOYMENT, settings={"fault_delay_ms": delay}, reason=reason, who="opsloop demo"
    )
    deadline = time.monotonic() + 30
    while _served_revision(client, url) < d.revision:
        if time.monotonic() > deadline:
            raise RuntimeError(f"opsloop serve did not swap in revision {d.revision} in 30 s")
        time.sleep(0.05)
    return int(d.revision)


def _fault_drill(client: Any, url: str, columns: list[str], rows: pd.DataFrame) -> dict[str, Any]:
    """A latency fault in the served model: the deployment's ``fault_delay_ms`` set (a
    hot swap, no restart), requests sent through it, then unset again."""
    import numpy as np

    revision = _switch(client, url, FAULT_MS, f"opsloop demo: a {FAULT_MS:g} ms latency drill")
    time.sleep(0.02)
    start_ms = int(time.time() * 1000)
    latencies = []
    try:
        for row in rows.iloc[:FAULT_REQUESTS].to_numpy().tolist():
            body = {"dataframe_split": {"columns": columns, "data": [row]}}
            t = time.perf_counter()
            client.post(f"{url}/invocations", json=body).raise_for_status()
            latencies.append((time.perf_counter() - t) * 1000)
    finally:
        _switch(client, url, None, "opsloop demo: the latency drill is over")
    return {
        "start_ms": start_ms,
        "end_ms": int(time.time() * 1000),
        "revision": revision,
        "requests": len(latencies),
        "latency_p50_ms": float(np.median(latencies)) if latencies else None,
    }


def _monitor(
    reference: str, features: list[str], spans: dict[str, tuple[float, float]]
) -> list[tuple[str, Any]]:
    """A monitor on the deployment's inputs against the training data; run over each
    phase's window of the prediction log (the server would run it every 10 minutes)."""
    import opsloop.monitoring as mon
    from opsloop.errors import NotFound

    name = f"{DEPLOYMENT}-inputs"
    try:
        m = mon.get_monitor(name)
        if m.reference != reference:
            mon.delete_monitor(name)
            raise NotFound(name)
    except NotFound:
        mon.create_monitor(
            name,
            deployment=DEPLOYMENT,
            reference=reference,
            every="10m",
            window="1h",
            checks=["input_drift"],
            features=features,
            description="opsloop demo: the served inputs against the training data",
        )
    runs = []
    for phase, (t0, t1) in spans.items():
        runs.append((phase, mon.run_monitor(name, at=t1, window=t1 - t0)))
    return runs


def _service_log(log: pd.DataFrame, fault_ms: int) -> list[tuple[int, str]]:
    """The inference service's log over the traffic, as an application would write it:
    a line per request, and from the fault on, a burst of errors it never wrote before."""
    lines: list[tuple[int, str]] = []
    for i, r in enumerate(log.itertuples(index=False)):
        t = int(r.timestamp.value // 1_000_000)
        lines.append(
            (
                t,
                f"INFO request {r.request_id} model {MODEL_NAME} v{r.version} "
                f"answered in {r.latency_ms:.2f} ms",
            )
        )
        if t >= fault_ms and i % 2 == 0:
            lines.append(
                (
                    t,
                    f"ERROR feature store call for request {r.request_id} timed out after "
                    f"{r.latency_ms:.0f} ms, retry {i % 3 + 1} of 3",
                )
            )
    return lines


def _clock(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _found_line(found: dict[str, Any], fault_ms: int) -> str:
    """What the detectors found, and how long after the fault's start."""
    lines = []
    a = found["latency_first"]
    if a is None:
        lines.append("latency detector: nothing flagged after the fault")
    else:
        lines.append(
            f"latency detector: serving_latency_ms anomalous at {_clock(a.time_ms)} "
            f"({a.value:.1f} ms, score {a.score:.2f}), {(a.time_ms - fault_ms) / 1000:.2f} s "
            f"after the fault (event #{a.event_id}); {found['latency_false_alarms']} flagged "
            "before it"
        )
    first = found["log_first"]
    if not first:
        lines.append(f"log detectors: nothing flagged in {found['lines']} lines")
    else:
        lines.append(f"log detectors: {found['log_events']} event(s) in {found['lines']} lines")
        for t, e in first:  # the first of each detector
            lines.append(
                f"  {e.payload.get('detector')}: at {_clock(t)}, {(t - fault_ms) / 1000:.2f} s "
                f"after the fault: {e.message}"
            )
    return "\n".join(lines)


def _detect(since: Any, fault_ms: int, instance: str) -> dict[str, Any]:
    """What the AIOps detectors find in this run's traffic: the served latency as a
    signal through the streaming detectors, and the service's log through the log
    anomaly detectors; the first finding of each and how long after the fault. Both are
    per ``instance`` (this run's ``opsloop serve`` process), as a pod's metrics and log
    would be."""
    from opsloop import serving
    from opsloop.aiops.logs.ingest import LogConfig, LogIngestor
    from opsloop.aiops.signals import SignalDetectors, Signals
    from opsloop.store import default_store

    store = default_store()
    log = serving.predictions(DEPLOYMENT, since=since).sort_values("timestamp")
    stamps = [int(t.value // 1_000_000) for t in log["timestamp"]]
    labels = {"deployment": DEPLOYMENT, "instance": instance}
    source = f"{DEPLOYMENT}-{instance}"
    Signals(store).push(
        [
            {"name": "serving_latency_ms", "labels": labels, "timestamp": t, "value": float(v)}
            for t, v in zip(stamps, log["latency_ms"], strict=True)
        ]
    )
    found = [
        a
        for a in SignalDetectors(store).process()
        if a.series.name == "serving_latency_ms" and a.series.labels == labels
    ]
    after = [a for a in found if a.time_ms >= fault_ms]
    first = min(after, key=lambda a: a.time_ms) if after else None
    before = len(found) - len(after)
    lines = _service_log(log, fault_ms)
    # Windows of a second and a warm-up of 300 lines: the demo's minutes are seconds
    # (the server's defaults are a minute and ten minutes). The warm-up's span is at most
    # half the traffic before the fault: on a fast machine 400 requests take under a
    # second, and a source still warming up reports nothing.
    before_fault = max(1, fault_ms - lines[0][0]) if lines else 1
    config = LogConfig(
        window_ms=1000,
        lateness_ms=1000,
        warmup_ms=min(1000, max(1, before_fault // 2)),
        warmup_lines=300,
        min_history=3,
    )
    ingestor = LogIngestor(store, config)
    event_ids: set[int] = set()
    accepted = 0
    for i in range(0, len(lines), LOG_BATCH):  # as a log shipper sends them
        result = ingestor.ingest(source, lines[i : i + LOG_BATCH])
        event_ids.update(result.events)
        accepted += result.accepted
    from opsloop.store.events import list_events

    events = [
        e
        for e in list_events(store.db, kind="log.anomaly", since_ms=fault_ms - 60_000)
        if e.event_id in event_ids
    ]
    by_detector: dict[str, tuple[int, Any]] = {}
    for e in events:
        # a line's time; a rate change is known when its window ends
        t = int(e.payload.get("time") or e.payload.get("window_end") or e.time_ms)
        kind = str(e.payload.get("detector"))
        if kind not in by_detector or t < by_detector[kind][0]:
            by_detector[kind] = (t, e)
    log_first = sorted(by_detector.values(), key=lambda te: te[0])
    return {
        "latency_first": first,
        "latency_false_alarms": before,
        "log_first": log_first,
        "log_events": len(events),
        "lines": len(lines),
        "accepted": accepted,
    }
