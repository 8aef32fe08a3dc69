"""MLflow's model registry endpoints: registered models, versions, tags and aliases.

Each handler is one call to :class:`~opsloop.registry.service.RegistryService`.
Paths are relative to ``/api/2.0/mlflow``; methods are those of MLflow's
``model_registry.proto`` (some are PATCH and DELETE with a JSON body).
"""

from __future__ import annotations

from typing import Any

from opsloop.server.mlflow_compat import convert
from opsloop.server.mlflow_compat.protocol import Fields
from opsloop.server.mlflow_compat.routing import Handler
from opsloop.server.services import Services

# -- registered models -----------------------------------------------------------------


def create_registered_model(s: Services, f: Fields) -> dict[str, Any]:
    rm = s.registry.create_registered_model(
        f.text("name", required=True),
        tags=f.key_values("tags"),
        description=f.opt_text("description"),
    )
    return {"registered_model": convert.registered_model(rm)}


def get_registered_model(s: Services, f: Fields) -> dict[str, Any]:
    rm = s.registry.get_registered_model(f.text("name", required=True))
    return {"registered_model": convert.registered_model(rm)}


def rename_registered_model(s: Services, f: Fields) -> dict[str, Any]:
    rm = s.registry.rename_registered_model(
        f.text("name", required=True), f.text("new_name", required=True)
    )
    return {"registered_model": convert.registered_model(rm)}


def update_registered_model(s: Services, f: Fields) -> dict[str, Any]:
    rm = s.registry.update_registered_model(f.text("name", required=True), f.text("description"))
    return {"registered_model": convert.registered_model(rm)}


def delete_registered_model(s: Services, f: Fields) -> None:
    s.registry.delete_registered_model(f.text("name", required=True))


def search_registered_models(s: Services, f: Fields) -> dict[str, Any]:
    page = s.registry.search_registered_models(
        filter_string=f.opt_text("filter"),
        max_results=f.max_results(),
        order_by=f.texts("order_by") or None,
        page_token=f.page_token(),
    )
    out: dict[str, Any] = {"registered_models": [convert.registered_model(rm) for rm in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_latest_versions(s: Services, f: Fields) -> dict[str, Any]:
    versions = s.registry.get_latest_versions(
        f.text("name", required=True), f.texts("stages") or None
    )
    return {"model_versions": [convert.model_version(mv) for mv in versions]}


def set_registered_model_tag(s: Services, f: Fields) -> None:
    s.registry.set_registered_model_tag(
        f.text("name", required=True), f.text("key", required=True), f.text("value")
    )


def delete_registered_model_tag(s: Services, f: Fields) -> None:
    s.registry.delete_registered_model_tag(
        f.text("name", required=True), f.text("key", required=True)
    )


# -- versions ----------------------------------------------------------------------------


def create_model_version(s: Services, f: Fields) -> dict[str, Any]:
    mv = s.registry.create_model_version(
        f.text("name", required=True),
        f.text("source", required=True),
        run_id=f.opt_text("run_id"),
        tags=f.key_values("tags"),
        run_link=f.opt_text("run_link"),
        description=f.opt_text("description"),
        model_id=f.opt_text("model_id"),
    )
    return {"model_version": convert.model_version(mv)}


def get_model_version(s: Services, f: Fields) -> dict[str, Any]:
    mv = s.registry.get_model_version(
        f.text("name", required=True), f.text("version", required=True)
    )
    return {"model_version": convert.model_version(mv)}


def update_model_version(s: Services, f: Fields) -> dict[str, Any]:
    mv = s.registry.update_model_version(
        f.text("name", required=True), f.text("version", required=True), f.text("description")
    )
    return {"model_version": convert.model_version(mv)}


def delete_model_version(s: Services, f: Fields) -> None:
    s.registry.delete_model_version(f.text("name", required=True), f.text("version", required=True))


def search_model_versions(s: Services, f: Fields) -> dict[str, Any]:
    page = s.registry.search_model_versions(
        filter_string=f.opt_text("filter"),
        max_results=f.max_results(),
        order_by=f.texts("order_by") or None,
        page_token=f.page_token(),
    )
    out: dict[str, Any] = {"model_versions": [convert.model_version(mv) for mv in page.items]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def transition_model_version_stage(s: Services, f: Fields) -> dict[str, Any]:
    mv = s.registry.transition_model_version_stage(
        f.text("name", required=True),
        f.text("version", required=True),
        f.text("stage", required=True),
        archive_existing_versions=f.boolean("archive_existing_versions"),
    )
    return {"model_version": convert.model_version(mv)}


def get_model_version_download_uri(s: Services, f: Fields) -> dict[str, Any]:
    uri = s.registry.get_model_version_download_uri(
        f.text("name", required=True), f.text("version", required=True)
    )
    return {"artifact_uri": uri}


def set_model_version_tag(s: Services, f: Fields) -> None:
    s.registry.set_model_version_tag(
        f.text("name", required=True),
        f.text("version", required=True),
        f.text("key", required=True),
        f.text("value"),
    )


def delete_model_version_tag(s: Services, f: Fields) -> None:
    s.registry.delete_model_version_tag(
        f.text("name", required=True),
        f.text("version", required=True),
        f.text("key", required=True),
    )


# -- aliases -----------------------------------------------------------------------------


def set_registered_model_alias(s: Services, f: Fields) -> None:
    s.registry.set_registered_model_alias(
        f.text("name", required=True),
        f.text("alias", required=True),
        f.text("version", required=True),
    )


def delete_registered_model_alias(s: Services, f: Fields) -> None:
    s.registry.delete_registered_model_alias(
        f.text("name", required=True), f.text("alias", required=True)
    )


def get_model_version_by_alias(s: Services, f: Fields) -> dict[str, Any]:
    mv = s.registry.get_model_version_by_alias(
        f.text("name", required=True), f.text("alias", required=True)
    )
    return {"model_version": convert.model_version(mv)}


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("POST", "/registered-models/rename", rename_registered_model),
    ("PATCH", "/registered-models/update", update_registered_model),
    ("DELETE", "/registered-models/delete", delete_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/registered-models/set-tag", set_registered_model_tag),
    ("DELETE", "/registered-models/delete-tag", delete_registered_model_tag),
    ("POST", "/registered-models/alias", set_registered_model_alias),
    ("DELETE", "/registered-models/alias", delete_registered_model_alias),
    ("GET", "/registered-models/alias", get_model_version_by_alias),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("PATCH", "/model-versions/update", update_model_version),
    ("DELETE", "/model-versions/delete", delete_model_version),
    ("GET", "/model-versions/search", search_model_versions),
    ("POST", "/model-versions/transition-stage", transition_model_version_stage),
    ("GET", "/model-versions/get-download-uri", get_model_version_download_uri),
    ("POST", "/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/model-versions/delete-tag", delete_model_version_tag),
]
