"""``opsloop.log_model`` and ``opsloop.load_model``: models in, models out.

A logged model is an MLmodel folder (MLflow's format, so either tool loads it) stored
as a logged model of the active run's experiment, and registered as a new version of
the name given. Example::

    with opsloop.start_run(experiment="churn"):
        mv = opsloop.log_model(clf, "churn", input_example=X[:5])
    opsloop.set_alias("churn", "production", mv.version)
    model = opsloop.load_model("models:/churn@production")
    model.predict(X)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from opsloop.errors import InvalidInput, NotFound
from opsloop.registry.entities import ModelVersion
from opsloop.registry.service import RegistryService
from opsloop.store import default_service
from opsloop.tracking import fluent
from opsloop.tracking.capture import current_step_log
from opsloop.tracking.entities import ModelOutput
from opsloop.tracking.service import TrackingService, artifact_path_of


def _registry() -> RegistryService:
    return default_service(RegistryService)


def log_model(
    model: Any,
    name: str,
    *,
    input_example: Any = None,
    signature: Any = None,
    pip_requirements: list[str] | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    alias: str | None = None,
    register: bool = True,
) -> ModelVersion:
    """Log ``model`` (a scikit-learn estimator or any Python callable) and register it as
    a new version of ``name``; returns the version (with ``.version``).

    The signature is inferred from ``input_example`` and the model's output on it;
    the environment (Python version, pinned requirements) is recorded with it. With
    an active run, the model is that run's output, and the version points to the run.
    """
    from opsloop.registry import flavors

    reg = _registry()
    tracking = TrackingService(reg.store)
    step_log = current_step_log()
    # Inside a pipeline step: the step's run as stored (a model is its output).
    run = fluent.step_run(step_log) if step_log is not None else fluent.active_run()
    if register:
        from opsloop.registry.service import model_name

        model_name(name)
    experiment_id = run.info.experiment_id if run else "0"
    lm = tracking.create_logged_model(
        experiment_id, name, source_run_id=run.info.run_id if run else None, tags=tags
    )
    try:
        with tempfile.TemporaryDirectory(prefix="opsloop-model-") as tmp:
            path = Path(tmp) / "model"
            info = flavors.save_model(
                model,
                path,
                input_example=input_example,
                signature=signature,
                pip_requirements=pip_requirements,
            )
            dest = artifact_path_of(lm.artifact_location)
            if dest is None:
                raise InvalidInput(
                    f"experiment {experiment_id} keeps artifacts outside opsloop's store"
                )
            reg.store.artifacts.put_dir(dest, path)
    except BaseException:
        tracking.finalize_logged_model(lm.model_id, "FAILED")
        raise
    tracking.finalize_logged_model(lm.model_id, "READY")
    if run is not None:
        tracking.log_outputs(run.info.run_id, [ModelOutput(lm.model_id, 0)])
    sig_json = json.dumps(info.signature.to_mlmodel_dict()) if info.signature is not None else None
    env_json = json.dumps(info.environment)
    if not register:
        return ModelVersion(
            name,
            "",
            lm.creation_timestamp,
            lm.last_updated_timestamp,
            description or "",
            "",
            "None",
            f"models:/{lm.model_id}",
            lm.source_run_id,
            None,
            "READY",
            None,
            {},
            [],
            lm.model_id,
            info.flavor,
            sig_json,
            env_json,
        )
    try:
        reg.get_registered_model(name)
    except NotFound:
        try:
            reg.create_registered_model(name)
        except Exception:
            reg.get_registered_model(name)
    mv = reg.create_model_version(
        name,
        f"models:/{lm.model_id}",
        run_id=run.info.run_id if run else None,
        description=description,
        model_id=lm.model_id,
        flavor=info.flavor,
        signature=sig_json,
        environment=env_json,
        user_id=run.info.user_id if run else "",
    )
    if alias:
        reg.set_registered_model_alias(name, alias, mv.version)
        mv = reg.get_model_version(name, mv.version)
    return mv


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` (``production``, ``staging``, any name) at a version, atomically."""
    _registry().set_registered_model_alias(name, alias, version)


def _artifact_dir_for(uri: str) -> str:
    """The artifact-store folder of a model URI."""
    reg = _registry()
    if uri.startswith("models:/m-"):
        model_id = uri[len("models:/") :].split("/")[0]
        lm = TrackingService(reg.store).get_logged_model(model_id)
        location = lm.artifact_location
    elif uri.startswith("models:/"):
        mv = reg.resolve(uri)
        location = reg.get_model_version_download_uri(mv.name, mv.version)
    elif uri.startswith("runs:/"):
        rest = uri[len("runs:/") :]
        run_id, _, sub = rest.partition("/")
        run = TrackingService(reg.store).get_run(run_id)
        location = run.info.artifact_uri.rstrip("/") + (f"/{sub}" if sub else "")
    elif uri.startswith("mlflow-artifacts:/"):
        location = uri
    else:
        raise InvalidInput(
            f"cannot load {uri!r}: give models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH or a local folder"
        )
    path = artifact_path_of(location)
    if path is None:
        raise InvalidInput(f"model at {location!r} is outside opsloop's artifact store")
    return path


def load_model(uri: str | os.PathLike[str], *, dst: str | os.PathLike[str] | None = None) -> Any:
    """Load a model for prediction: an object with ``.predict(DataFrame)``.

    ``uri`` is ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME/latest``,
    ``runs:/RUN_ID/PATH``, or a local MLmodel folder (one the stock ``mlflow``
    client wrote works too).
    """
    from opsloop.registry import flavors

    if isinstance(uri, os.PathLike) or (isinstance(uri, str) and os.path.isdir(uri)):
        return flavors.load_model(Path(uri))
    path = _artifact_dir_for(str(uri))
    store = _registry().store
    target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="opsloop-load-"))
    local = store.artifacts.download(path, target)
    return flavors.load_model(local)
