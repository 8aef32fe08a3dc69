"""The template store on disk: one JSON file (written atomically), or a blob in opsloop's
content-addressed store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from opsloop.aiops.logs.miner import MinerConfig, TemplateMiner
from opsloop.errors import InvalidInput

if TYPE_CHECKING:
    from opsloop.store.blobs import BlobStore


def save_miner(miner: TemplateMiner, path: str | os.PathLike[str]) -> None:
    """Write the miner's templates to ``path`` (replaced atomically).

    >>> save_miner(miner, "templates.json")  # doctest: +SKIP
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(miner.to_dict(), option=orjson.OPT_INDENT_2)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_miner(path: str | os.PathLike[str], config: MinerConfig | None = None) -> TemplateMiner:
    """A miner holding the templates saved at ``path`` (an empty one if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return TemplateMiner(config)
    return _from_bytes(p.read_bytes(), str(p), config)


def save_miner_blob(miner: TemplateMiner, blobs: BlobStore) -> str:
    """Store the templates as a blob; return its SHA-256."""
    sha, _ = blobs.put_bytes(orjson.dumps(miner.to_dict()))
    return sha


def load_miner_blob(blobs: BlobStore, sha: str, config: MinerConfig | None = None) -> TemplateMiner:
    return _from_bytes(blobs.get_bytes(sha), f"blob {sha}", config)


def _from_bytes(data: bytes, where: str, config: MinerConfig | None) -> TemplateMiner:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{where} is not a template store (bad JSON: {exc})") from exc
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where} is not a template store (not a JSON object)")
    return TemplateMiner.from_dict(obj, config)
