"""The artifact proxy over real HTTP: round trips, path escapes, cut-off uploads."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pytest

from tests.server.conftest import Server

PROXY = "/api/2.0/mlflow-artifacts/artifacts"


def raw_request(
    server: Server, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes]:
    """A request whose path is sent byte for byte (httpx would normalise ``..``)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def listing(http: httpx.Client, path: str) -> list[dict[str, object]]:
    r = http.get(PROXY, params={"path": path})
    assert r.status_code == 200, r.text
    files: list[dict[str, object]] = r.json().get("files", [])
    return files


def test_upload_download_list_round_trip(http: httpx.Client, unique: str) -> None:
    root = f"9/{unique}/artifacts"
    big = os.urandom(3 * 1024 * 1024 + 17)
    assert http.put(f"{PROXY}/{root}/notes.txt", content=b"hello\n").status_code == 200
    assert http.put(f"{PROXY}/{root}/data/big.bin", content=big).status_code == 200
    assert http.put(f"{PROXY}/{root}/data/sub/x.json", content=b"{}").status_code == 200

    top = sorted(listing(http, root), key=lambda f: str(f["path"]))
    assert top == [
        {"path": "data", "is_dir": True},
        {"path": "notes.txt", "is_dir": False, "file_size": 6},
    ]
    data = sorted(listing(http, f"{root}/data"), key=lambda f: str(f["path"]))
    assert data == [
        {"path": "big.bin", "is_dir": False, "file_size": len(big)},
        {"path": "sub", "is_dir": True},
    ]
    # Listing a file (not a folder) gives nothing, as MLflow's server does.
    assert listing(http, f"{root}/notes.txt") == []
    assert listing(http, f"{root}/nothing-here") == []

    r = http.get(f"{PROXY}/{root}/notes.txt")
    assert r.status_code == 200 and r.content == b"hello\n"
    assert r.headers["content-type"].startswith("text/plain")
    with http.stream("GET", f"{PROXY}/{root}/data/big.bin") as resp:
        assert resp.status_code == 200
        h = hashlib.sha256()
        for chunk in resp.iter_bytes():
            h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(big).hexdigest()

    # Overwriting a path replaces what it names.
    assert http.put(f"{PROXY}/{root}/notes.txt", content=b"v2").status_code == 200
    assert http.get(f"{PROXY}/{root}/notes.txt").content == b"v2"

    # Deleting a folder removes everything under it.
    assert http.delete(f"{PROXY}/{root}/data").status_code == 200
    assert listing(http, root) == [{"path": "notes.txt", "is_dir": False, "file_size": 2}]
    missing = http.get(f"{PROXY}/{root}/data/big.bin")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_streamed_chunked_upload(http: httpx.Client, unique: str) -> None:
    """A body sent in chunks (no Content-Length) is stored whole."""
    parts = [os.urandom(65536) for _ in range(20)]

    def gen() -> Iterator[bytes]:
        yield from parts

    path = f"9/{unique}/artifacts/chunked.bin"
    r = http.put(f"{PROXY}/{path}", content=gen())
    assert r.status_code == 200, r.text
    assert http.get(f"{PROXY}/{path}").content == b"".join(parts)


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "9/run/artifacts/../../../../etc/passwd",
        "%2E%2E/%2E%2E/etc/passwd",
        "9/..%2F..%2Fsecret",
        "/etc/passwd",
        "C:/windows/win.ini",
    ],
)
def test_paths_outside_the_root_are_refused(server: Server, http: httpx.Client, path: str) -> None:
    for method, body in (("GET", None), ("PUT", b"x"), ("DELETE", None)):
        status, content = raw_request(server, method, f"{PROXY}/{path}", body)
        assert status == 400, (method, path, content)
        err = httpx.Response(status, content=content).json()
        assert err["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "artifact path" in err["message"]
    r = http.get(PROXY, params={"path": path.replace("%2E", ".").replace("%2F", "/")})
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Nothing was written anywhere.
    assert all(f["path"] not in ("etc", "C:", "secret") for f in listing(http, ""))


def _spooled_uploads(server: Server) -> list[Path]:
    return list(server.spool.glob("upload-*")) if server.spool.exists() else []


def _objects(server: Server) -> set[str]:
    fs, root = fsspec.core.url_to_fs(server.artifacts)
    fs.invalidate_cache()
    return set(fs.find(f"{root}/objects"))


def test_cut_off_upload_leaves_nothing(server: Server, http: httpx.Client, unique: str) -> None:
    path = f"9/{unique}/artifacts/partial.bin"
    objects_before = _objects(server)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT {PROXY}/{path} HTTP/1.1\r\n"
                f"Host: {server.host}:{server.port}\r\n"
                "Content-Type: application/octet-stream\r\n"
                "Content-Length: 1000000\r\n\r\n"
            ).encode()
        )
        sock.sendall(os.urandom(1000))
        # Wait until the server has started spooling this body, then hang up.
        deadline = time.monotonic() + 10
        while not _spooled_uploads(server) and time.monotonic() < deadline:
            time.sleep(0.01)
    # The server notices the disconnect and drops its spool file.
    deadline = time.monotonic() + 10
    while _spooled_uploads(server):
        assert time.monotonic() < deadline, "the cut-off upload's spool file was never removed"
        time.sleep(0.02)
    assert listing(http, f"9/{unique}/artifacts") == []
    r = http.get(f"{PROXY}/{path}")
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert _objects(server) == objects_before
    # The server still serves.
    assert http.get("/health").text == "OK"


def test_empty_artifact_path_is_refused(http: httpx.Client) -> None:
    r = http.put(f"{PROXY}/", content=b"x")
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_corrupt_blob_is_refused_before_any_byte(
    server: Server, http: httpx.Client, unique: str
) -> None:
    """A stored blob whose bytes no longer match its hash is a 500 DATA_LOSS, not bad data."""
    content = os.urandom(4096)
    path = f"9/{unique}/artifacts/corrupt.bin"
    assert http.put(f"{PROXY}/{path}", content=content).status_code == 200
    sha = hashlib.sha256(content).hexdigest()
    with fsspec.open(f"{server.artifacts}/objects/{sha[:2]}/{sha[2:]}", "wb") as blob:
        blob.write(b"not what was stored")
    r = http.get(f"{PROXY}/{path}")
    assert r.status_code == 500
    assert r.json()["error_code"] == "DATA_LOSS"
    assert sha in r.json()["message"]
