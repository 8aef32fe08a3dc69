"""``/api/v1`` registered models, their versions, tags and aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import (
    AliasSet,
    DownloadUri,
    ModelCreate,
    ModelUpdate,
    ModelVersion,
    Page,
    RegisteredModel,
    TagValue,
    VersionCreate,
    VersionUpdate,
)

router = APIRouter(prefix="/models")


@router.get("", tags=["registry"])
def search_models(
    svc: Svc,
    filter: str | None = None,
    max_results: int | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    page_token: str | None = None,
) -> Page[RegisteredModel]:
    """Registered models matching a filter (``name LIKE 'fraud%'``), a page at a time."""
    page = svc.registry.search_registered_models(filter, max_results, order_by, page_token)
    return Page[RegisteredModel](
        items=[RegisteredModel.of(m) for m in page.items], next_page_token=page.next_page_token
    )


@router.post("", status_code=201, tags=["registry"])
def create_model(svc: Svc, body: ModelCreate) -> RegisteredModel:
    return RegisteredModel.of(
        svc.registry.create_registered_model(body.name, body.tags, body.description)
    )


@router.get("/{name}", tags=["registry"])
def get_model(svc: Svc, name: str) -> RegisteredModel:
    return RegisteredModel.of(svc.registry.get_registered_model(name))


@router.patch("/{name}", tags=["registry"])
def update_model(svc: Svc, name: str, body: ModelUpdate) -> RegisteredModel:
    """Change a model's description and/or rename it."""
    if body.description is not None:
        svc.registry.update_registered_model(name, body.description)
    if body.name is not None and body.name != name:
        return RegisteredModel.of(svc.registry.rename_registered_model(name, body.name))
    return RegisteredModel.of(svc.registry.get_registered_model(name))


@router.delete("/{name}", status_code=204, tags=["registry"])
def delete_model(svc: Svc, name: str) -> None:
    """Delete a model with all its versions, tags and aliases."""
    svc.registry.delete_registered_model(name)


@router.put("/{name}/tags/{key:path}", status_code=204, tags=["registry"])
def set_model_tag(svc: Svc, name: str, key: str, body: TagValue) -> None:
    svc.registry.set_registered_model_tag(name, key, body.value)


@router.delete("/{name}/tags/{key:path}", status_code=204, tags=["registry"])
def delete_model_tag(svc: Svc, name: str, key: str) -> None:
    svc.registry.delete_registered_model_tag(name, key)


# -- versions ----------------------------------------------------------------------------


@router.get("/{name}/versions", tags=["registry"])
def list_versions(
    svc: Svc, name: str, max_results: int | None = None, page_token: str | None = None
) -> Page[ModelVersion]:
    svc.registry.get_registered_model(name)
    quoted = f'"{name}"' if "'" in name else f"'{name}'"
    page = svc.registry.search_model_versions(f"name = {quoted}", max_results, None, page_token)
    return Page[ModelVersion](
        items=[ModelVersion.of(v) for v in page.items], next_page_token=page.next_page_token
    )


@router.post("/{name}/versions", status_code=201, tags=["registry"])
def create_version(svc: Svc, name: str, body: VersionCreate) -> ModelVersion:
    """Register a new version of ``name`` from a model's artifacts."""
    return ModelVersion.of(
        svc.registry.create_model_version(
            name,
            body.source,
            run_id=body.run_id,
            tags=body.tags,
            run_link=body.run_link,
            description=body.description,
            model_id=body.model_id,
        )
    )


@router.get("/{name}/versions/{version}", tags=["registry"])
def get_version(svc: Svc, name: str, version: str) -> ModelVersion:
    return ModelVersion.of(svc.registry.get_model_version(name, version))


@router.patch("/{name}/versions/{version}", tags=["registry"])
def update_version(svc: Svc, name: str, version: str, body: VersionUpdate) -> ModelVersion:
    if body.description is not None:
        svc.registry.update_model_version(name, version, body.description)
    if body.stage is not None:
        svc.registry.transition_model_version_stage(
            name, version, body.stage, body.archive_existing_versions
        )
    return ModelVersion.of(svc.registry.get_model_version(name, version))


@router.delete("/{name}/versions/{version}", status_code=204, tags=["registry"])
def delete_version(svc: Svc, name: str, version: str) -> None:
    svc.registry.delete_model_version(name, version)


@router.get("/{name}/versions/{version}/download-uri", tags=["registry"])
def get_download_uri(svc: Svc, name: str, version: str) -> DownloadUri:
    """Where the version's model artifacts are (an ``mlflow-artifacts:/`` URI)."""
    return DownloadUri(artifact_uri=svc.registry.get_model_version_download_uri(name, version))


@router.put("/{name}/versions/{version}/tags/{key:path}", status_code=204, tags=["registry"])
def set_version_tag(svc: Svc, name: str, version: str, key: str, body: TagValue) -> None:
    svc.registry.set_model_version_tag(name, version, key, body.value)


@router.delete("/{name}/versions/{version}/tags/{key:path}", status_code=204, tags=["registry"])
def delete_version_tag(svc: Svc, name: str, version: str, key: str) -> None:
    svc.registry.delete_model_version_tag(name, version, key)


# -- aliases -----------------------------------------------------------------------------


@router.get("/{name}/aliases/{alias}", tags=["registry"])
def get_version_by_alias(svc: Svc, name: str, alias: str) -> ModelVersion:
    return ModelVersion.of(svc.registry.get_model_version_by_alias(name, alias))


@router.put("/{name}/aliases/{alias}", tags=["registry"])
def set_alias(svc: Svc, name: str, alias: str, body: AliasSet) -> ModelVersion:
    """Point ``alias`` at a version (moving it is one atomic step)."""
    svc.registry.set_registered_model_alias(name, alias, body.version)
    return ModelVersion.of(svc.registry.get_model_version_by_alias(name, alias))


@router.delete("/{name}/aliases/{alias}", status_code=204, tags=["registry"])
def delete_alias(svc: Svc, name: str, alias: str) -> None:
    svc.registry.delete_registered_model_alias(name, alias)
