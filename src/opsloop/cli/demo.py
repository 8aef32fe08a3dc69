"""``opsloop demo``: the main job, on the embedded store, with no set-up.

It trains a few scikit-learn classifiers on the breast-cancer data scikit-learn ships,
tracks each as a run (params, a learning curve, final metrics, a report artifact),
registers the best, points the ``production`` alias at it, loads it back through the
alias and checks its predictions. Later parts of opsloop extend it stage by stage.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
EXPERIMENT = "demo-breast-cancer"
MODEL_NAME = "demo-classifier"


def _candidates() -> list[tuple[str, dict[str, Any], Any]]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out: list[tuple[str, dict[str, Any], Any]] = []
    for c in (0.01, 1.0):
        out.append(
            (
                "logreg",
                {"model": "logistic_regression", "C": c},
                make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)),
            )
        )
    out.append(
        (
            "forest",
            {"model": "random_forest", "n_estimators": 100, "max_depth": 6},
            RandomForestClassifier(n_estimators=100, max_depth=6, random_state=0, n_jobs=1),
        )
    )
    out.append(
        (
            "boosting",
            {"model": "gradient_boosting", "n_estimators": 100, "learning_rate": 0.1},
            GradientBoostingClassifier(n_estimators=100, learning_rate=0.1, random_state=0),
        )
    )
    return out


def run_demo() -> dict[str, Any]:
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
    from sklearn.model_selection import train_test_split

    import opsloop
    from opsloop.core.config import Settings

    settings = Settings.from_env()
    t0 = time.perf_counter()
    data = load_breast_cancer(as_frame=True)
    x, y = data.data, data.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=42, stratify=y
    )

    results: list[dict[str, Any]] = []
    with opsloop.start_run(experiment=EXPERIMENT, run_name="model-selection") as parent:
        opsloop.log_params({"dataset": "sklearn.breast_cancer", "test_size": 0.25, "rows": len(x)})
        for label, params, model in _candidates():
            with opsloop.start_run(
                run_name=f"{label}-{params.get('C', params.get('n_estimators'))}", nested=True
            ) as run:
                opsloop.log_params(params)
                model.fit(x_train, y_train)
                # A learning curve, so the store holds a real metric series.
                if hasattr(model, "staged_predict_proba"):
                    for step, proba in enumerate(model.staged_predict_proba(x_test)):
                        opsloop.log_metric(
                            "test_log_loss", float(log_loss(y_test, proba)), step=step
                        )
                proba = model.predict_proba(x_test)[:, 1]
                pred = (proba >= 0.5).astype(int)
                metrics = {
                    "accuracy": float(accuracy_score(y_test, pred)),
                    "f1": float(f1_score(y_test, pred)),
                    "roc_auc": float(roc_auc_score(y_test, proba)),
                    "log_loss": float(log_loss(y_test, np.c_[1 - proba, proba])),
                }
                opsloop.log_metrics(metrics)
                opsloop.set_tag("family", label)
                with tempfile.TemporaryDirectory() as tmp:
                    report = Path(tmp) / "report.json"
                    report.write_text(json.dumps({"params": params, "metrics": metrics}, indent=2))
                    opsloop.log_artifact(report)
                results.append(
                    {
                        "run_id": run.run_id,
                        "label": label,
                        "params": params,
                        "model": model,
                        **metrics,
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
    return {"version": mv.version, "best_run": best["run_id"], "agree": agree, "runs": len(results)}
