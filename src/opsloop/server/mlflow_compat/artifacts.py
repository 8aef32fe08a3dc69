"""MLflow's artifact proxy: ``/api/2.0/mlflow-artifacts/artifacts/<path>``.

Runs log to ``mlflow-artifacts:/<experiment>/<run>/artifacts``; the stock client turns
that into HTTP requests here, and the path after ``/artifacts/`` is exactly the path
in opsloop's artifact store. Bodies stream both ways: an upload is spooled and hashed
as it arrives and becomes visible only when it is complete (a cut-off upload leaves
nothing behind), a download is streamed after its checksum is verified.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from opsloop.server.responses import EMPTY, JSON, json_response
from opsloop.server.services import Services
from opsloop.store.artifacts import FileInfo, clean_path


def _listing(files: list[FileInfo]) -> dict[str, Any]:
    out = []
    for fi in files:
        item: dict[str, Any] = {"path": fi.path.rsplit("/", 1)[-1], "is_dir": fi.is_dir}
        if fi.size is not None:
            item["file_size"] = fi.size
        out.append(item)
    return {"files": out} if out else {}


def _open(services: Services, path: str) -> Iterator[bytes]:
    """The blob's chunks, with the first already read: a missing or corrupt artifact
    fails here, before any status line is sent."""
    chunks = services.store.artifacts.iter_bytes(path)
    first = next(chunks, b"")

    def all_chunks() -> Iterator[bytes]:
        yield first
        yield from chunks

    return all_chunks()


def routes(services: Services) -> list[BaseRoute]:
    artifacts = services.store.artifacts

    async def list_artifacts(request: Request) -> Response:
        path = clean_path(request.query_params.get("path", ""), allow_empty=True)
        files = await run_in_threadpool(artifacts.list, path)
        return json_response(_listing(files))

    async def download_artifact(request: Request) -> Response:
        path = clean_path(request.path_params["artifact_path"])
        chunks = await run_in_threadpool(_open, services, path)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return StreamingResponse(chunks, media_type=media_type)

    async def upload_artifact(request: Request) -> Response:
        path = clean_path(request.path_params["artifact_path"])
        try:
            await artifacts.put_async_stream(path, request.stream())
        except ClientDisconnect:
            # The client went away mid-body: nothing was stored and nobody is listening.
            return Response(status_code=400)
        return Response(EMPTY, media_type=JSON)

    async def delete_artifact(request: Request) -> Response:
        path = clean_path(request.path_params["artifact_path"])
        await run_in_threadpool(artifacts.delete, path)
        return Response(EMPTY, media_type=JSON)

    async def item(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            return await download_artifact(request)
        if request.method == "PUT":
            return await upload_artifact(request)
        return await delete_artifact(request)

    return [
        Route("/artifacts", list_artifacts, methods=["GET"], include_in_schema=False),
        Route(
            "/artifacts/{artifact_path:path}",
            item,
            methods=["GET", "PUT", "DELETE"],
            include_in_schema=False,
        ),
    ]
