"""``/api/v1`` experiments, runs, what is logged to them, and run artifacts."""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from opsloop.core.ids import now_ms
from opsloop.errors import InvalidInput
from opsloop.server.api_v1.deps import Svc
from opsloop.server.api_v1.models import (
    ArtifactFile,
    Batch,
    Experiment,
    ExperimentCreate,
    ExperimentUpdate,
    Metric,
    MetricIn,
    Page,
    ParamIn,
    Run,
    RunCreate,
    RunSearch,
    RunUpdate,
    TagValue,
)
from opsloop.server.services import Services
from opsloop.store.artifacts import clean_path, join
from opsloop.tracking.entities import Metric as MetricRecord
from opsloop.tracking.service import artifact_path_of

router = APIRouter()

# -- experiments ------------------------------------------------------------------------


@router.get("/experiments", tags=["experiments"])
def search_experiments(
    svc: Svc,
    filter: str | None = None,
    view: str = "ACTIVE_ONLY",
    max_results: int | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    page_token: str | None = None,
) -> Page[Experiment]:
    """Experiments matching a filter (``name LIKE 'fraud%'``), a page at a time."""
    page = svc.tracking.search_experiments(view, max_results, filter, order_by, page_token)
    return Page[Experiment](
        items=[Experiment.of(e) for e in page.items], next_page_token=page.next_page_token
    )


@router.post("/experiments", status_code=201, tags=["experiments"])
def create_experiment(svc: Svc, body: ExperimentCreate) -> Experiment:
    eid = svc.tracking.create_experiment(body.name, body.artifact_location, body.tags)
    return Experiment.of(svc.tracking.get_experiment(eid))


@router.get("/experiments/by-name/{name}", tags=["experiments"])
def get_experiment_by_name(svc: Svc, name: str) -> Experiment:
    return Experiment.of(svc.tracking.get_experiment_by_name(name))


@router.get("/experiments/{experiment_id}", tags=["experiments"])
def get_experiment(svc: Svc, experiment_id: str) -> Experiment:
    return Experiment.of(svc.tracking.get_experiment(experiment_id))


@router.patch("/experiments/{experiment_id}", tags=["experiments"])
def rename_experiment(svc: Svc, experiment_id: str, body: ExperimentUpdate) -> Experiment:
    svc.tracking.rename_experiment(experiment_id, body.name)
    return Experiment.of(svc.tracking.get_experiment(experiment_id))


@router.delete("/experiments/{experiment_id}", status_code=204, tags=["experiments"])
def delete_experiment(svc: Svc, experiment_id: str) -> None:
    """Mark an experiment and its runs deleted (restore undoes it)."""
    svc.tracking.delete_experiment(experiment_id)


@router.post("/experiments/{experiment_id}/restore", tags=["experiments"])
def restore_experiment(svc: Svc, experiment_id: str) -> Experiment:
    svc.tracking.restore_experiment(experiment_id)
    return Experiment.of(svc.tracking.get_experiment(experiment_id))


@router.put("/experiments/{experiment_id}/tags/{key:path}", status_code=204, tags=["experiments"])
def set_experiment_tag(svc: Svc, experiment_id: str, key: str, body: TagValue) -> None:
    svc.tracking.set_experiment_tag(experiment_id, key, body.value)


@router.delete(
    "/experiments/{experiment_id}/tags/{key:path}", status_code=204, tags=["experiments"]
)
def delete_experiment_tag(svc: Svc, experiment_id: str, key: str) -> None:
    svc.tracking.delete_experiment_tag(experiment_id, key)


# -- runs ---------------------------------------------------------------------------------


@router.post("/runs", status_code=201, tags=["runs"])
def create_run(svc: Svc, body: RunCreate) -> Run:
    run = svc.tracking.create_run(
        body.experiment_id,
        user_id=body.user_id,
        start_time=body.start_time,
        tags=body.tags,
        run_name=body.name,
        parent_run_id=body.parent_run_id,
        source=body.source,
    )
    return Run.of(run)


@router.post("/runs/search", tags=["runs"])
def search_runs(svc: Svc, body: RunSearch) -> Page[Run]:
    """Runs of some experiments matching a filter, in an order, a page at a time."""
    page = svc.tracking.search_runs(
        body.experiment_ids,
        body.filter,
        body.view,
        body.max_results,
        body.order_by,
        body.page_token,
    )
    return Page[Run](items=[Run.of(r) for r in page.items], next_page_token=page.next_page_token)


@router.get("/runs/{run_id}", tags=["runs"])
def get_run(svc: Svc, run_id: str) -> Run:
    return Run.of(svc.tracking.get_run(run_id))


@router.patch("/runs/{run_id}", tags=["runs"])
def update_run(svc: Svc, run_id: str, body: RunUpdate) -> Run:
    """Change a run's status, end time or name (ending a run: status FINISHED)."""
    svc.tracking.update_run(run_id, status=body.status, end_time=body.end_time, run_name=body.name)
    return Run.of(svc.tracking.get_run(run_id))


@router.delete("/runs/{run_id}", status_code=204, tags=["runs"])
def delete_run(svc: Svc, run_id: str) -> None:
    svc.tracking.delete_run(run_id)


@router.post("/runs/{run_id}/restore", tags=["runs"])
def restore_run(svc: Svc, run_id: str) -> Run:
    svc.tracking.restore_run(run_id)
    return Run.of(svc.tracking.get_run(run_id))


@router.post("/runs/{run_id}/metrics", status_code=204, tags=["runs"])
def log_metric(svc: Svc, run_id: str, body: MetricIn) -> None:
    svc.tracking.log_metric(run_id, body.key, body.value, body.timestamp, body.step)


@router.post("/runs/{run_id}/params", status_code=204, tags=["runs"])
def log_param(svc: Svc, run_id: str, body: ParamIn) -> None:
    """Log a param; a param is set once (logging another value for it is refused)."""
    svc.tracking.log_param(run_id, body.key, body.value)


@router.put("/runs/{run_id}/tags/{key:path}", status_code=204, tags=["runs"])
def set_tag(svc: Svc, run_id: str, key: str, body: TagValue) -> None:
    svc.tracking.set_tag(run_id, key, body.value)


@router.delete("/runs/{run_id}/tags/{key:path}", status_code=204, tags=["runs"])
def delete_tag(svc: Svc, run_id: str, key: str) -> None:
    svc.tracking.delete_tag(run_id, key)


@router.post("/runs/{run_id}/batch", status_code=204, tags=["runs"])
def log_batch(svc: Svc, run_id: str, body: Batch) -> None:
    """Log metrics, params and tags at once: all of them are stored, or none."""
    now = now_ms()
    svc.tracking.log_batch(
        run_id,
        [_metric(m, now) for m in body.metrics],
        body.params,
        body.tags,
    )


def _metric(m: MetricIn, now: int) -> MetricRecord:
    return MetricRecord(m.key, m.value, m.timestamp if m.timestamp is not None else now, m.step)


@router.get("/runs/{run_id}/metrics/{key:path}/history", tags=["runs"])
def get_metric_history(
    svc: Svc,
    run_id: str,
    key: str,
    max_results: int | None = None,
    page_token: str | None = None,
) -> Page[Metric]:
    """Every point of one metric, by step then timestamp."""
    page = svc.tracking.get_metric_history(run_id, key, max_results, page_token)
    return Page[Metric](
        items=[Metric.of(m) for m in page.items], next_page_token=page.next_page_token
    )


# -- run artifacts ----------------------------------------------------------------------------


def _run_root(svc: Services, run_id: str) -> str:
    run = svc.tracking.get_run(run_id)
    root = artifact_path_of(run.info.artifact_uri)
    if root is None:
        raise InvalidInput(
            f"run {run_id} keeps its artifacts at {run.info.artifact_uri}, "
            "outside this server's artifact store"
        )
    return root


@router.get("/runs/{run_id}/artifacts", tags=["artifacts"])
def list_artifacts(svc: Svc, run_id: str, path: str = "") -> list[ArtifactFile]:
    """The files and folders directly inside ``path`` of a run's artifacts."""
    root = _run_root(svc, run_id)
    rel = clean_path(path, allow_empty=True)
    return [
        ArtifactFile(path=fi.path[len(root) + 1 :], is_dir=fi.is_dir, size=fi.size)
        for fi in svc.store.artifacts.list(join(root, rel))
    ]


def _open(svc: Services, run_id: str, path: str) -> Iterator[bytes]:
    chunks = svc.store.artifacts.iter_bytes(join(_run_root(svc, run_id), clean_path(path)))
    first = next(chunks, b"")

    def all_chunks() -> Iterator[bytes]:
        yield first
        yield from chunks

    return all_chunks()


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    tags=["artifacts"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_artifact(svc: Svc, run_id: str, path: str) -> StreamingResponse:
    """The bytes of one artifact file, streamed after its checksum is verified."""
    chunks = await run_in_threadpool(_open, svc, run_id, path)
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return StreamingResponse(chunks, media_type=media_type)


@router.put(
    "/runs/{run_id}/artifacts/{path:path}",
    tags=["artifacts"],
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_artifact(svc: Svc, run_id: str, path: str, request: Request) -> ArtifactFile:
    """Store the request body as one artifact file (visible once complete)."""
    root = await run_in_threadpool(_run_root, svc, run_id)
    rel = clean_path(path)
    try:
        fi = await svc.store.artifacts.put_async_stream(join(root, rel), request.stream())
    except ClientDisconnect:
        # The client went away mid-body: nothing was stored and nobody is listening.
        raise InvalidInput(f"the upload of {rel!r} was cut off; nothing was stored") from None
    return ArtifactFile(path=rel, is_dir=False, size=fi.size)


@router.delete("/runs/{run_id}/artifacts/{path:path}", status_code=204, tags=["artifacts"])
def delete_artifact(svc: Svc, run_id: str, path: str) -> Response:
    svc.store.artifacts.delete(join(_run_root(svc, run_id), clean_path(path)))
    return Response(status_code=204)
