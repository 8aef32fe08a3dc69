"""The artifact store: content addressing, atomic writes, checksums, path safety."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from opsloop.core.config import Settings
from opsloop.errors import IntegrityError, NotFound, PathOutsideRoot
from opsloop.store import Store
from opsloop.store.artifacts import BlobStore, clean_path


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../x", "/etc/passwd", "a/..", "..", "C:/x", "a\x00b"]
)
def test_paths_cannot_escape_the_root(bad: str) -> None:
    with pytest.raises(PathOutsideRoot):
        clean_path(bad)


def test_clean_path_normalises() -> None:
    assert clean_path("a//b/./c/") == "a/b/c"
    assert clean_path("", allow_empty=True) == ""


def test_put_get_list_walk_download(store: Store, tmp_path: Path) -> None:
    arts = store.artifacts
    fi = arts.put_bytes("1/run/artifacts/a.txt", b"hello")
    assert fi.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert arts.get_bytes("1/run/artifacts/a.txt") == b"hello"
    # The same content twice is one blob.
    arts.put_bytes("1/run/artifacts/sub/b.txt", b"hello")
    blobs = [p for p in Path(store.blobs.root, "objects").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    listing = {f.path: f.is_dir for f in arts.list("1/run/artifacts")}
    assert listing == {"1/run/artifacts/a.txt": False, "1/run/artifacts/sub": True}
    assert [f.path for f in arts.walk("1/run/artifacts")] == [
        "1/run/artifacts/a.txt",
        "1/run/artifacts/sub/b.txt",
    ]
    out = arts.download("1/run/artifacts", tmp_path / "dl")
    assert (out / "sub" / "b.txt").read_bytes() == b"hello"
    with pytest.raises(NotFound):
        arts.get_bytes("1/run/artifacts/missing")
    # A prefix match is not a folder match: "1/run/art" is not "1/run/artifacts".
    assert arts.list("1/run/art") == []


def test_put_dir_refuses_symlinks_out(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "ok.txt").write_text("ok")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, d / "link.txt")
    with pytest.raises(PathOutsideRoot):
        store.artifacts.put_dir("1/r/artifacts", d)
    assert store.artifacts.walk("1/r/artifacts") == []
    # A link that stays inside the folder is stored as a copy.
    os.unlink(d / "link.txt")
    os.symlink(d / "ok.txt", d / "inner.txt")
    store.artifacts.put_dir("1/r/artifacts", d)
    assert store.artifacts.get_bytes("1/r/artifacts/inner.txt") == b"ok"


def test_corrupt_blob_is_refused(store: Store) -> None:
    fi = store.artifacts.put_bytes("x/y", b"precious")
    obj = Path(store.blobs.root, "objects", fi.sha256[:2], fi.sha256[2:])  # type: ignore[index]
    obj.write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        store.artifacts.get_bytes("x/y")


def test_interrupted_stream_leaves_nothing(store: Store) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b"a" * 1000
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.artifacts.put_stream("x/partial.bin", chunks())
    with pytest.raises(NotFound):
        store.artifacts.stat("x/partial.bin")
    root = Path(store.blobs.root)
    assert not [p for p in (root / "objects").rglob("*") if p.is_file()]
    assert not list((root / "tmp").iterdir())


def test_large_file_streams_and_verifies(store: Store, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = os.urandom(9 * (1 << 20) + 7)
    big.write_bytes(data)
    store.artifacts.put_file("x/big.bin", big)
    assert b"".join(store.artifacts.iter_bytes("x/big.bin")) == data


def test_s3_blob_store(s3_server: dict[str, str], tmp_path: Path, db_url: str) -> None:
    url = f"s3://{s3_server['bucket']}/t-{os.getpid()}-{tmp_path.name}"
    blobs = BlobStore(url)
    assert not blobs.is_local
    s = Store(Settings(home=tmp_path, database_url=db_url, artifacts_url=url))
    try:
        fi = s.artifacts.put_bytes("1/r/artifacts/m.bin", b"model-bytes")
        assert s.artifacts.get_bytes("1/r/artifacts/m.bin") == b"model-bytes"
        d = tmp_path / "folder"
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f.txt").write_text("f")
        (d / "g.txt").write_text("g")
        s.artifacts.put_dir("1/r/artifacts/folder", d)
        out = s.artifacts.download("1/r/artifacts/folder", tmp_path / "dl")
        assert (out / "sub" / "f.txt").read_text() == "f"
        # The blob really is in the bucket, under its checksum.
        import boto3

        key = f"{url.split('/', 3)[3]}/objects/{fi.sha256[:2]}/{fi.sha256[2:]}"  # type: ignore[index]
        body = boto3.client("s3").get_object(Bucket=s3_server["bucket"], Key=key)["Body"].read()
        assert body == b"model-bytes"

        def chunks():  # type: ignore[no-untyped-def]
            yield b"x" * 100
            raise ConnectionError("cut")

        with pytest.raises(ConnectionError):
            s.artifacts.put_stream("1/r/artifacts/cut.bin", chunks())
        with pytest.raises(NotFound):
            s.artifacts.stat("1/r/artifacts/cut.bin")
    finally:
        s.close()
