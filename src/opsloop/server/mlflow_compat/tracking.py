"""MLflow's tracking endpoints: experiments, runs, what is logged to them, logged models.

Each handler reads MLflow's request fields, makes one call to
:class:`~opsloop.tracking.service.TrackingService` and writes MLflow's response
shape. Paths are relative to ``/api/2.0/mlflow`` (and ``/ajax-api/2.0/mlflow``).
"""

from __future__ import annotations

import re
from typing import Any

from opsloop.errors import InvalidInput, NotFound
from opsloop.server.mlflow_compat import convert
from opsloop.server.mlflow_compat.protocol import Fields, invalid, missing
from opsloop.server.mlflow_compat.routing import Handler
from opsloop.server.responses import parse_number
from opsloop.server.services import Services
from opsloop.store.artifacts import clean_path, join
from opsloop.tracking.entities import DatasetInput, ModelOutput
from opsloop.tracking.service import artifact_path_of

# -- experiments ---------------------------------------------------------------------


def create_experiment(s: Services, f: Fields) -> dict[str, Any]:
    experiment_id = s.tracking.create_experiment(
        f.text("name", required=True),
        artifact_location=f.opt_text("artifact_location"),
        tags=f.key_values("tags"),
    )
    return {"experiment_id": experiment_id}


def get_experiment(s: Services, f: Fields) -> dict[str, Any]:
    exp = s.tracking.get_experiment(f.text("experiment_id", required=True))
    return {"experiment": convert.experiment(exp)}


def get_experiment_by_name(s: Services, f: Fields) -> dict[str, Any]:
    exp = s.tracking.get_experiment_by_name(f.text("experiment_name", required=True))
    return {"experiment": convert.experiment(exp)}


def search_experiments(s: Services, f: Fields) -> dict[str, Any]:
    page = s.tracking.search_experiments(
        view_type=f.enum("view_type", convert.VIEW_TYPE),
        max_results=f.max_results(),
        filter_string=f.opt_text("filter"),
        order_by=f.texts("order_by") or None,
        page_token=f.page_token(),
    )
    out: dict[str, Any] = {"experiments": [convert.experiment(e) for e in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def update_experiment(s: Services, f: Fields) -> None:
    experiment_id = f.text("experiment_id", required=True)
    new_name = f.opt_text("new_name")
    if new_name is not None:
        s.tracking.rename_experiment(experiment_id, new_name)
    else:
        s.tracking.get_experiment(experiment_id)


def delete_experiment(s: Services, f: Fields) -> None:
    s.tracking.delete_experiment(f.text("experiment_id", required=True))


def restore_experiment(s: Services, f: Fields) -> None:
    s.tracking.restore_experiment(f.text("experiment_id", required=True))


def set_experiment_tag(s: Services, f: Fields) -> None:
    s.tracking.set_experiment_tag(
        f.text("experiment_id", required=True), f.text("key", required=True), f.text("value")
    )


def delete_experiment_tag(s: Services, f: Fields) -> None:
    s.tracking.delete_experiment_tag(
        f.text("experiment_id", required=True), f.text("key", required=True)
    )


# -- runs ------------------------------------------------------------------------------


def create_run(s: Services, f: Fields) -> dict[str, Any]:
    run = s.tracking.create_run(
        f.text("experiment_id") or "0",
        user_id=f.text("user_id"),
        start_time=f.integer("start_time"),
        tags=f.key_values("tags"),
        run_name=f.opt_text("run_name"),
    )
    return {"run": convert.run(run)}


def get_run(s: Services, f: Fields) -> dict[str, Any]:
    return {"run": convert.run(s.tracking.get_run(f.run_id()))}


def update_run(s: Services, f: Fields) -> dict[str, Any]:
    info = s.tracking.update_run(
        f.run_id(),
        status=f.enum("status", convert.RUN_STATUS),
        end_time=f.integer("end_time"),
        run_name=f.opt_text("run_name"),
    )
    return {"run_info": convert.run_info(info)}


def delete_run(s: Services, f: Fields) -> None:
    s.tracking.delete_run(f.run_id())


def restore_run(s: Services, f: Fields) -> None:
    s.tracking.restore_run(f.run_id())


def search_runs(s: Services, f: Fields) -> dict[str, Any]:
    page = s.tracking.search_runs(
        f.texts("experiment_ids"),
        filter_string=f.opt_text("filter"),
        run_view_type=f.enum("run_view_type", convert.VIEW_TYPE),
        max_results=f.max_results(),
        order_by=f.texts("order_by") or None,
        page_token=f.page_token(),
    )
    run = convert.run
    out: dict[str, Any] = {"runs": [run(r) for r in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


# -- logging ---------------------------------------------------------------------------


def log_metric(s: Services, f: Fields) -> None:
    s.tracking.log_metric(
        f.run_id(),
        f.text("key", required=True),
        f.number("value", required=True),
        timestamp=f.integer("timestamp", required=True),
        step=f.integer("step") or 0,
    )


def log_param(s: Services, f: Fields) -> None:
    s.tracking.log_param(f.run_id(), f.text("key", required=True), f.text("value"))


def set_tag(s: Services, f: Fields) -> None:
    s.tracking.set_tag(f.run_id(), f.text("key", required=True), f.text("value"))


def delete_tag(s: Services, f: Fields) -> None:
    s.tracking.delete_tag(f.run_id(), f.text("key", required=True))


def _int_field(name: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise invalid(name, value, "an integer")


def _batch_metrics(raw: list[dict[str, Any]]) -> list[tuple[str, float, int, int]]:
    """The metrics of a log-batch request as ``(key, value, timestamp, step)``: the hot
    loop, so types are checked inline."""
    out: list[tuple[str, float, int, int]] = []
    append = out.append
    for i, m in enumerate(raw):
        key = m.get("key")
        value = m.get("value", 0.0)
        ts = m.get("timestamp", 0)
        step = m.get("step", 0)
        if type(value) is not float:
            parsed = parse_number(value)
            if parsed is None:
                raise invalid(f"metrics[{i}].value", value, "a number")
            value = parsed
        if type(ts) is not int:
            ts = _int_field(f"metrics[{i}].timestamp", ts)
        if type(step) is not int:
            step = _int_field(f"metrics[{i}].step", step)
        if type(key) is not str:
            raise invalid(f"metrics[{i}].key", key, "a string")
        append((key, value, ts, step))
    return out


def _batch_pairs(name: str, raw: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, p in enumerate(raw):
        key = p.get("key")
        value = p.get("value", "")
        if type(key) is not str:
            raise invalid(f"{name}[{i}].key", key, "a string")
        if type(value) is not str:
            if value is None:
                value = ""
            else:
                raise invalid(f"{name}[{i}].value", value, "a string")
        out.append((key, value))
    return out


def log_batch(s: Services, f: Fields) -> None:
    s.tracking.log_batch(
        f.run_id(),
        params_=_batch_pairs("params", f.objects("params")),
        tags_=_batch_pairs("tags", f.objects("tags")),
        points=_batch_metrics(f.objects("metrics")),
    )


def log_inputs(s: Services, f: Fields) -> None:
    inputs: list[DatasetInput] = []
    for i, item in enumerate(f.objects("datasets")):
        ds = item.get("dataset")
        if not isinstance(ds, dict):
            raise invalid(f"datasets[{i}].dataset", ds, "an object")
        fields = Fields.from_json(ds)
        tags = Fields.from_json(item).key_values("tags")
        inputs.append(
            DatasetInput(
                name=fields.text("name", required=True),
                digest=fields.text("digest", required=True),
                source_type=fields.text("source_type"),
                source=fields.text("source"),
                schema=fields.opt_text("schema"),
                profile=fields.opt_text("profile"),
                tags=[{"key": k, "value": v} for k, v in tags.items()],
            )
        )
    # Model inputs (``models``) link a run to logged models it read; opsloop does not
    # record those yet, so they are accepted and dropped.
    run_id = f.run_id()
    if inputs:
        s.tracking.log_inputs(run_id, inputs)
    else:
        s.tracking.get_run(run_id)


def log_outputs(s: Services, f: Fields) -> None:
    outputs: list[ModelOutput] = []
    for i, item in enumerate(f.objects("models")):
        model_id = item.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise invalid(f"models[{i}].model_id", model_id, "a non-empty string")
        step = item.get("step", 0)
        if type(step) is not int:
            step = _int_field(f"models[{i}].step", step)
        outputs.append(ModelOutput(model_id, step))
    s.tracking.log_outputs(f.run_id(), outputs)


def log_model(s: Services, f: Fields) -> None:
    """MLflow 2's record of a logged model on its run: checked and accepted.

    MLflow 3 clients record models as logged models; this older record is not kept.
    """
    f.text("model_json")
    s.tracking.get_run(f.run_id())


def get_metric_history(s: Services, f: Fields) -> dict[str, Any]:
    run_id = f.run_id()
    page = s.tracking.get_metric_history(
        run_id,
        f.text("metric_key", required=True),
        max_results=f.max_results(),
        page_token=f.page_token(),
    )
    out: dict[str, Any] = {"metrics": convert.metrics(page.items)}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def list_run_artifacts(s: Services, f: Fields) -> dict[str, Any]:
    """The run-based listing (``artifacts/list``) that the MLflow UI uses."""
    run = s.tracking.get_run(f.run_id())
    root = artifact_path_of(run.info.artifact_uri)
    if root is None:
        raise InvalidInput(
            f"run {run.info.run_id} keeps its artifacts at {run.info.artifact_uri}, "
            "outside this server's artifact store"
        )
    return _listing(s, root, f.text("path"), run.info.artifact_uri)


def _listing(s: Services, root: str, rel: str, root_uri: str) -> dict[str, Any]:
    """MLflow's ``files`` listing of one folder below an artifact root."""
    files = []
    for fi in s.store.artifacts.list(join(root, clean_path(rel, allow_empty=True))):
        item: dict[str, Any] = {"path": fi.path[len(root) + 1 :], "is_dir": fi.is_dir}
        if fi.size is not None:
            item["file_size"] = fi.size
        files.append(item)
    out: dict[str, Any] = {"root_uri": root_uri}
    if files:
        out["files"] = files
    return out


# -- logged models (MLflow 3) -------------------------------------------------------------


def create_logged_model(s: Services, f: Fields) -> dict[str, Any]:
    model = s.tracking.create_logged_model(
        f.text("experiment_id", required=True),
        f.opt_text("name"),
        source_run_id=f.opt_text("source_run_id"),
        tags=f.key_values("tags"),
        params=f.key_values("params"),
        model_type=f.opt_text("model_type"),
    )
    return {"model": convert.logged_model(model)}


def get_logged_model(s: Services, f: Fields) -> dict[str, Any]:
    model = s.tracking.get_logged_model(
        f.text("model_id", required=True), allow_deleted=f.boolean("allow_deleted")
    )
    return {"model": convert.logged_model(model)}


def finalize_logged_model(s: Services, f: Fields) -> dict[str, Any]:
    status = f.enum("status", convert.LOGGED_MODEL_STATUS)
    if status is None:
        raise missing("status")
    model = s.tracking.finalize_logged_model(f.text("model_id", required=True), status)
    return {"model": convert.logged_model(model)}


def delete_logged_model(s: Services, f: Fields) -> None:
    s.tracking.delete_logged_model(f.text("model_id", required=True))


def set_logged_model_tags(s: Services, f: Fields) -> dict[str, Any]:
    model = s.tracking.set_logged_model_tags(
        f.text("model_id", required=True), f.key_values("tags")
    )
    return {"model": convert.logged_model(model)}


def delete_logged_model_tag(s: Services, f: Fields) -> None:
    s.tracking.delete_logged_model_tag(
        f.text("model_id", required=True), f.text("tag_key", required=True)
    )


def log_logged_model_params(s: Services, f: Fields) -> None:
    s.tracking.log_logged_model_params(f.text("model_id", required=True), f.key_values("params"))


_LOGGED_MODEL_FILTERS = ("source_run_id", "name")


def _logged_model_filter(text: str | None) -> dict[str, str]:
    """The equality filters on logged models that opsloop answers (``name = 'x' AND ...``)."""
    out: dict[str, str] = {}
    if not text or not text.strip():
        return out
    for clause in re.split(r"\s+(?i:and)\s+", text.strip()):
        m = re.fullmatch(r"\s*(\w+)\s*=\s*(['\"])(.*)\2\s*", clause)
        if m is None or m.group(1) not in _LOGGED_MODEL_FILTERS:
            raise InvalidInput(
                f"unsupported logged-model filter {clause!r}: opsloop filters logged models "
                "by equality on name and source_run_id, e.g. \"name = 'model'\""
            )
        out[m.group(1)] = m.group(3)
    return out


def search_logged_models(s: Services, f: Fields) -> dict[str, Any]:
    wanted = _logged_model_filter(f.opt_text("filter"))
    if f.objects("order_by") or f.objects("datasets"):
        raise InvalidInput("ordering and dataset filters on logged models are not supported")
    page = s.tracking.search_logged_models(
        f.texts("experiment_ids"),
        max_results=f.max_results(),
        page_token=f.page_token(),
        source_run_id=wanted.get("source_run_id"),
        name=wanted.get("name"),
    )
    out: dict[str, Any] = {"models": [convert.logged_model(m) for m in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def list_logged_model_artifacts(s: Services, f: Fields) -> dict[str, Any]:
    model = s.tracking.get_logged_model(f.text("model_id", required=True))
    root = artifact_path_of(model.artifact_location)
    if root is None:
        raise NotFound(f"logged model {model.model_id} has no artifacts in this server's store")
    return _listing(s, root, f.text("artifact_directory_path"), model.artifact_location)


# Hot endpoints first: routes are matched in order.
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/search", search_runs),
    ("GET", "/metrics/get-history", get_metric_history),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/create", create_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/restore", restore_run),
    ("POST", "/runs/log-inputs", log_inputs),
    ("POST", "/runs/outputs", log_outputs),
    ("POST", "/runs/log-model", log_model),
    ("GET", "/artifacts/list", list_run_artifacts),
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/search", search_experiments),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/experiments/delete", delete_experiment),
    ("POST", "/experiments/restore", restore_experiment),
    ("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    ("POST", "/experiments/delete-experiment-tag", delete_experiment_tag),
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("DELETE", "/logged-models/{model_id}", delete_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
    ("POST", "/logged-models/{model_id}/params", log_logged_model_params),
    ("GET", "/logged-models/{model_id}/artifacts/directories", list_logged_model_artifacts),
]
