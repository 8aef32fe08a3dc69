"""The step cache: from a step's key to the outputs it produced.

The key of a step is the SHA-256 of its code hash, its canonical params and the
content hashes of its inputs (see ``fingerprint``), plus the names of its outputs. The
index from key to outputs is one small JSON artifact per key,
``pipelines/cache/<key>.json`` in the artifact store, naming each output's blob. It is
made visible in the same transaction as the outputs' own artifact paths, after every
output blob is stored, so an entry never points at an output that is not there; and a
hit is taken only if those blobs are still present.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from opsloop.errors import IntegrityError
from opsloop.pipelines.fingerprint import FINGERPRINT_VERSION, canonical, sha256_json
from opsloop.pipelines.values import dump_value
from opsloop.pipelines.worker import Slot, StoredOutput
from opsloop.store import Store
from opsloop.store.tables import artifact_files

PREFIX = "pipelines/cache"


def entry_path(key: str) -> str:
    """The artifact path of the cache entry for ``key``.

    Example::

        >>> entry_path("ab12")
        'pipelines/cache/ab12.json'
    """
    return f"{PREFIX}/{key}.json"


def _key_part(template: Any, shas: Sequence[str]) -> Any:
    if isinstance(template, Slot):
        return {"$input": shas[template.index]}
    if isinstance(template, list):
        return [_key_part(t, shas) for t in template]
    if isinstance(template, tuple):
        return {"$tuple": [_key_part(t, shas) for t in template]}
    if isinstance(template, dict):
        return {
            str(k): _key_part(t, shas)
            for k, t in sorted(template.items(), key=lambda kv: str(kv[0]))
        }
    return canonical(template, dump=lambda value: dump_value(value)[0])


def step_key(
    code_hash: str,
    params: Any,
    input_templates: dict[str, Any],
    input_shas: Sequence[str],
    output_names: Sequence[str],
) -> str:
    """The cache key of one step invocation.

    ``params`` is already canonical; ``input_templates`` are the arguments that hold
    inputs, with ``Slot`` markers where the input values go.

    Example::

        key = step_key(code, {"lr": 0.1}, {"df": Slot(0)}, [df_sha], ["output"])
    """
    return sha256_json(
        {
            "v": FINGERPRINT_VERSION,
            "code": code_hash,
            "params": params,
            "inputs": {k: _key_part(t, input_shas) for k, t in sorted(input_templates.items())},
            "outputs": list(output_names),
        }
    )


@dataclass(frozen=True)
class Entry:
    key: str
    run_id: str
    outputs: tuple[StoredOutput, ...]


def encode(
    key: str, run_id: str, step: str, outputs: Iterable[StoredOutput], created: int
) -> bytes:
    """The bytes of a cache entry.

    Example::

        data = encode(key, run_id, "train", outcome.outputs, now_ms())
    """
    return json.dumps(
        {
            "version": FINGERPRINT_VERSION,
            "key": key,
            "step": step,
            "run_id": run_id,
            "created": created,
            "outputs": [
                {"name": o.name, "sha256": o.sha256, "size": o.size, "format": o.format}
                for o in outputs
            ],
        },
        sort_keys=True,
    ).encode()


def lookup(
    store: Store,
    keys: Iterable[str],
    conn: Connection | None = None,
    *,
    dbapi: Any = None,
) -> dict[str, Entry]:
    """The cache entries for ``keys`` whose outputs are all still stored (read in
    ``conn``'s transaction when given, or with ``dbapi``, a raw connection of the
    store's engine in autocommit (see ``Database.reader``), else in a transaction of its
    own).

    Example::

        hits = lookup(store, [key_a, key_b])     # {key_a: Entry(...)}
    """
    paths = {entry_path(k): k for k in dict.fromkeys(keys)}
    if not paths:
        return {}
    found: list[tuple[str, str]] = []
    names = list(paths)
    # Driver SQL: this runs once per ready step, and a SQLAlchemy select with an IN
    # list costs more to build than to run.
    mark = "?" if store.db.dialect == "sqlite" else "%s"
    with contextlib.ExitStack() as stack:
        if conn is None and dbapi is None:
            conn = stack.enter_context(store.db.read())
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            sql = (
                f"SELECT {artifact_files.c.path.name}, {artifact_files.c.sha256.name} "
                f"FROM {artifact_files.name} WHERE path IN ({', '.join([mark] * len(chunk))})"
            )
            if conn is not None:
                rows: Iterable[Any] = conn.exec_driver_sql(sql, tuple(chunk))
            else:
                cur = dbapi.cursor()
                try:
                    cur.execute(sql, tuple(chunk))
                    rows = cur.fetchall()
                finally:
                    cur.close()
            found.extend((str(p), str(s)) for p, s in rows)
    out: dict[str, Entry] = {}
    for path, sha in found:
        key = paths[path]
        try:
            doc = json.loads(store.blobs.get_bytes(sha))
            outputs = tuple(
                StoredOutput(o["name"], o["sha256"], int(o["size"]), o["format"])
                for o in doc["outputs"]
            )
        except (IntegrityError, ValueError, KeyError, TypeError):
            continue  # a damaged entry is a miss; the step runs and rewrites it
        if all(store.blobs.exists(o.sha256) for o in outputs):
            out[key] = Entry(key, str(doc.get("run_id", "")), outputs)
    return out
