"""``opsloop demo``: the main job, on the embedded store, with no set-up.

A pipeline (ingest → validate → features → train → evaluate) prepares the
breast-cancer data scikit-learn ships and trains a few classifiers; every step is a
tracked run and a second demo run serves them from the cache. The data is registered
as dataset versions, each candidate is a run (params, a learning curve, metrics, a
report artifact), the best is registered, the ``production`` alias points at it, and
it is loaded back through the alias to check its predictions. Later parts of opsloop
extend it stage by stage.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from opsloop.pipelines import pipeline, step

console = Console()
EXPERIMENT = "demo-breast-cancer"
MODEL_NAME = "demo-classifier"


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
    """Stop the pipeline here if the data is not what training expects."""
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
    return df


@step(outputs=("train", "test"))
def features(df: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split."""
    from sklearn.model_selection import train_test_split

    train_df, test_df = train_test_split(
        df, test_size=test_size, random_state=seed, stratify=df["target"]
    )
    return train_df.reset_index(drop=True), test_df.reset_index(drop=True)


@step
def train(train_df: pd.DataFrame) -> dict[str, Any]:
    """Fit every candidate; the models go to the next step (and the cache)."""
    x, y = train_df.drop(columns=["target"]), train_df["target"]
    return {
        key: (label, params, model.fit(x, y))
        for key, (label, params, model) in _candidates().items()
    }


@step
def evaluate(models: dict[str, Any], test_df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Test metrics of every candidate, and a learning curve where the model has one."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    x, y = test_df.drop(columns=["target"]), test_df["target"]
    out: dict[str, dict[str, Any]] = {}
    for key, (_label, _params, model) in models.items():
        proba = model.predict_proba(x)[:, 1]
        pred = (proba >= 0.5).astype(int)
        curve = (
            [float(log_loss(y, p)) for p in model.staged_predict_proba(x)]
            if hasattr(model, "staged_predict_proba")
            else []
        )
        out[key] = {
            "accuracy": float(accuracy_score(y, pred)),
            "f1": float(f1_score(y, pred)),
            "roc_auc": float(roc_auc_score(y, proba)),
            "log_loss": float(log_loss(y, np.c_[1 - proba, proba])),
            "curve": curve,
        }
    return out


@pipeline(name="demo-training", experiment=EXPERIMENT)
def training(test_size: float = 0.25, seed: int = 42) -> Any:
    """ingest → validate → features → train → evaluate."""
    train_df, test_df = features(validate(ingest()), test_size=test_size, seed=seed)
    return evaluate(train(train_df), test_df)


def run_demo() -> dict[str, Any]:
    import numpy as np

    import opsloop
    from opsloop.core.config import Settings
    from opsloop.pipelines import run

    settings = Settings.from_env()
    t0 = time.perf_counter()
    built = run(training, {"test_size": 0.25, "seed": 42}, executor="inline")
    hits = sum(1 for s in built.steps.values() if s.cache_hit)
    raw = built.output("validate")
    test_df = built.output("features", "test")
    models = built.output("train")
    evaluation = built.output("evaluate")
    x_test = test_df.drop(columns=["target"])

    results: list[dict[str, Any]] = []
    with opsloop.start_run(experiment=EXPERIMENT, run_name="model-selection") as parent:
        opsloop.set_tag("pipeline_run", built.run_id)
        # The data the candidates saw, versioned; recorded as this run's inputs.
        datasets = {
            "raw": opsloop.data.register(
                raw, name="demo-breast-cancer", description="sklearn breast_cancer"
            ),
            "train": opsloop.data.register(
                built.output("features", "train"), name="demo-breast-cancer-train"
            ),
            "test": opsloop.data.register(test_df, name="demo-breast-cancer-test"),
        }
        opsloop.log_params({"dataset": datasets["raw"].ref, "test_size": 0.25, "rows": len(raw)})
        for key, (label, params, model) in models.items():
            metrics = evaluation[key]
            with opsloop.start_run(run_name=key, nested=True) as run_:
                opsloop.log_params(params)
                for step_no, value in enumerate(metrics["curve"]):
                    opsloop.log_metric("test_log_loss", value, step=step_no)
                scores = {k: metrics[k] for k in ("accuracy", "f1", "roc_auc", "log_loss")}
                opsloop.log_metrics(scores)
                opsloop.set_tag("family", label)
                with tempfile.TemporaryDirectory() as tmp:
                    report = Path(tmp) / "report.json"
                    report.write_text(json.dumps({"params": params, "metrics": scores}, indent=2))
                    opsloop.log_artifact(report)
                results.append(
                    {
                        "run_id": run_.run_id,
                        "label": label,
                        "params": params,
                        "model": model,
                        **scores,
                    }
                )

        # Pick the best by ROC AUC, then accuracy: the search language does the ranking.
        best_run = opsloop.search_runs(
            experiment_names=[EXPERIMENT],
            filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'",
            order_by=["metrics.roc_auc DESC", "metrics.accuracy DESC"],
            max_results=1,
        )[0]
        best = next(r for r in results if r["run_id"] == best_run.info.run_id)

    with opsloop.start_run(experiment=EXPERIMENT, run_name="register-best"):
        opsloop.set_tag("source_run", best["run_id"])
        mv = opsloop.log_model(
            best["model"],
            MODEL_NAME,
            input_example=x_test.iloc[:5],
            description=f"best of {len(results)} candidates by ROC AUC ({best['roc_auc']:.4f})",
        )
    opsloop.set_alias(MODEL_NAME, "production", mv.version)
    loaded = opsloop.load_model(f"models:/{MODEL_NAME}@production")
    served = np.asarray(loaded.predict(x_test))
    agree = float((served.ravel() == best["model"].predict(x_test)).mean())
    elapsed = time.perf_counter() - t0

    table = Table(title=f"opsloop demo — experiment {EXPERIMENT!r}")
    for col in ("run", "model", "params", "accuracy", "f1", "roc_auc"):
        table.add_column(col, justify="right" if col in ("accuracy", "f1", "roc_auc") else "left")
    for r in sorted(results, key=lambda r: -r["roc_auc"]):
        mark = " ★" if r is best else ""
        shown = {k: val for k, val in r["params"].items() if k != "model"}
        table.add_row(
            r["run_id"][:8] + mark,
            r["label"],
            ", ".join(f"{k}={val}" for k, val in shown.items()),
            f"{r['accuracy']:.4f}",
            f"{r['f1']:.4f}",
            f"{r['roc_auc']:.4f}",
        )
    console.print(
        f"pipeline [bold]{training.name}[/bold] (ingest → validate → features → train → "
        f"evaluate): {len(built.steps)} steps, {hits} from the cache, {built.duration:.2f} s"
    )
    console.print(
        "datasets: " + ", ".join(f"{d.ref} ({d.num_rows} rows)" for d in datasets.values())
    )
    console.print(table)
    console.print(
        f"registered [bold]{MODEL_NAME}[/bold] version {mv.version} ({mv.flavor}) from run "
        f"{best['run_id'][:8]}; alias [bold]production[/bold] → v{mv.version}"
    )
    console.print(
        f"loaded models:/{MODEL_NAME}@production and predicted {len(served)} rows "
        f"({agree:.0%} agree with the trained model)"
    )
    console.print(f"metadata store:  {settings.redacted_database_url()}")
    console.print(f"artifact store:  {settings.artifacts_url}")
    console.print(
        f"done in {elapsed:.1f} s — look around with `opsloop runs ls -e {EXPERIMENT}` or `opsloop server`"
    )
    return {
        "version": mv.version,
        "best_run": best["run_id"],
        "agree": agree,
        "runs": len(results),
        "cache_hits": hits,
    }
