"""The prediction log: every request's inputs, outputs, model version, latency, time and
request id, as Parquet segments in the artifact store indexed in the metadata store;
ground-truth labels that come later, joined on read by request id.

Writing (the inference server)::

    writer = PredictionWriter(store, flush_interval=2.0, max_rows=10_000)
    writer.log("churn", 3, request_id, {"age": 41, "plan": "pro"}, 0.83, latency_ms=1.2)
    ...
    writer.close()          # on SIGTERM: flushes what is buffered

``log`` appends a tuple to an in-memory buffer and returns (about a microsecond; it
never waits on I/O). A background thread turns the buffer into one Parquet segment per
(deployment, version, served/shadow) every ``flush_interval`` seconds, or sooner when
``max_rows`` rows wait; each segment is a content-addressed blob, and its index row
(time span, row count, blob, schema) is written with the others of the flush in one
transaction. A crash therefore loses at most what came in the last flush interval. If
the store is unreachable, rows wait for the next flush (up to ``max_buffer_rows``;
past that new rows are dropped and counted, never blocking the server).

Sampling is decided by the request id (CRC-32), so every process, the stable, canary
and shadow versions all keep or drop the same requests.

Reading (anyone)::

    df = opsloop.serving.predictions("churn", since=datetime.now(UTC) - timedelta(hours=1))
    opsloop.serving.log_labels("churn", pd.DataFrame({"request_id": ids, "label": truth}))
    df = opsloop.serving.predictions("churn", since=..., with_labels=True)

A window reads only the segments whose time span overlaps it. Labels are segments too,
indexed by when they arrived: a label cannot arrive before its prediction, so a window
starting at T reads only label segments that arrived at or after T. The latest label of
a request wins.

This module imports only the standard library at load (pandas, pyarrow and SQLAlchemy
when first used), so that the package can import its ``predictions`` function eagerly.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import operator
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsloop.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]
    import pyarrow as pa

    from opsloop.store import Store

log = logging.getLogger("opsloop.serving.predictions")

ROOT = "predictions"
META = ("request_id", "timestamp", "version", "latency_ms")
# Columns the log writes itself; an input or output of one of these names is renamed
# "input.NAME" / "output.NAME".
RESERVED = frozenset((*META, "row", "shadow", "label", "label_time"))
OUTPUT = "prediction"
CHUNK_ROWS = 1024
MAX_LABEL_ROWS = 1_000_000
# Labels arrive after their predictions; a window reads the label segments that arrived
# from its start on, less this margin for clocks of different hosts that disagree.
LABEL_CLOCK_SKEW_S = 600.0
_TWO32 = float(1 << 32)
_SCALARS = (str, int, float, bool, type(None))


def keep(request_id: str, rate: float) -> bool:
    """Whether a request is logged at sampling ``rate`` (0..1): decided by its id, so the
    same in every process and for every version that answers it.

    Example::

        keep("req-1", 0.1)      # the same answer everywhere, ~10% of ids True
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(request_id.encode()) < rate * _TWO32


def check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise InvalidInput(f"a sampling rate must be a number from 0 to 1, got {rate!r}")
    return float(rate)


def log_name(deployment: object) -> str:
    """A name the log can file segments under (a deployment name, or a model's)."""
    if not isinstance(deployment, str) or not deployment or len(deployment) > 250:
        raise InvalidInput(
            f"a prediction log name must be a string of 1 to 250 characters, got {deployment!r}"
        )
    if deployment in (".", "..") or any(c in deployment for c in "/\\\x00\n\r"):
        raise InvalidInput(
            f"a prediction log name may not be '.' or '..' or contain '/', '\\\\', "
            f"NUL or line breaks: {deployment!r}"
        )
    return deployment


# -- writing ---------------------------------------------------------------------------


class ColumnBlock:
    """Rows of named columns as one 2-D array (rows x columns), for ``PredictionWriter.log``
    as a request's ``inputs``: what the inference server decoded, logged without a
    per-column copy on the request path. Do not change the array after logging it.

    Example::

        writer.log("churn", 3, "req-1", ColumnBlock(("age", "tenure"), np.array([[41, 7]])), 0.8, 1.2)
    """

    __slots__ = ("block", "names")

    def __init__(self, names: tuple[str, ...], block: Any) -> None:
        if getattr(block, "ndim", None) != 2 or block.shape[1] != len(names):
            raise InvalidInput(
                f"a ColumnBlock needs a 2-D array of {len(names)} columns, one per name"
            )
        self.names = names
        self.block = block

    def columns(self) -> dict[str, Any]:
        """Name -> 1-D array of the column's values."""
        return {n: self.block[:, j] for j, n in enumerate(self.names)}

    def __len__(self) -> int:
        return int(self.block.shape[0])

    def __repr__(self) -> str:
        return f"ColumnBlock({len(self)} rows of {', '.join(self.names)})"


# One logged request: (deployment, version, request_id, inputs, outputs, latency_ms,
# timestamp, shadow).
_Record = tuple[str, int | None, str, Any, Any, float, Any, bool]

_writers: weakref.WeakSet[PredictionWriter] = weakref.WeakSet()


@atexit.register
def _close_writers() -> None:
    for w in list(_writers):
        try:
            w.close(timeout=10.0)
        except Exception:  # at exit: say so, never raise
            log.exception("prediction log: the last flush at exit failed")


@dataclass
class WriterStats:
    """What a writer did: rows kept, sampled out, dropped (buffer full, or data that
    could not be stored), written; segments written; flush failures and the last error."""

    logged: int = 0
    sampled_out: int = 0
    dropped: int = 0
    written: int = 0
    segments: int = 0
    flush_errors: int = 0
    last_error: str | None = None


class PredictionWriter:
    """Buffers predictions and flushes them to the store in the background.

    ``sample_rate`` applies to every deployment unless ``set_sample_rate`` gives one
    its own. ``start=False`` runs no thread: ``flush()`` writes (for tests and tools).
    """

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = 2.0,
        max_rows: int = 10_000,
        sample_rate: float = 1.0,
        max_buffer_rows: int = 1_000_000,
        compression: str = "zstd",
        start: bool = True,
    ) -> None:
        if (
            isinstance(flush_interval, bool)
            or not isinstance(flush_interval, int | float)
            or not flush_interval > 0
        ):
            raise InvalidInput(f"flush_interval must be seconds > 0, got {flush_interval!r}")
        for what, value in (("max_rows", max_rows), ("max_buffer_rows", max_buffer_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{what} must be a positive integer, got {value!r}")
        self.store = store
        self.flush_interval = float(flush_interval)
        self.max_rows = max_rows
        self.max_buffer_rows = max(max_buffer_rows, max_rows)
        self.compression = compression
        self.stats = WriterStats()
        self._rate = check_rate(sample_rate)
        self._rates: dict[str, float] = {}
        self._sampling = self._rate < 1.0
        self._names: set[str] = set()
        self._buf: deque[_Record] = deque()
        self._pending: list[_Record] = []  # a failed flush's rows, tried again next time
        self._pending_n = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        _writers.add(self)
        if start:
            self._thread = threading.Thread(
                target=self._run, name="opsloop-prediction-log", daemon=True
            )
            self._thread.start()

    # -- the request path --------------------------------------------------------------

    def set_sample_rate(self, deployment: str, rate: float | None) -> None:
        """Log ``rate`` (0..1) of ``deployment``'s requests; None: the writer's rate."""
        if rate is None:
            self._rates.pop(deployment, None)
        else:
            self._rates[log_name(deployment)] = check_rate(rate)
        self._sampling = self._rate < 1.0 or any(r < 1.0 for r in self._rates.values())

    def log(
        self,
        deployment: str,
        version: int | None,
        request_id: str,
        inputs: Any,
        outputs: Any,
        latency_ms: float,
        timestamp: float | datetime | None = None,
        *,
        shadow: bool = False,
    ) -> bool:
        """Buffer one request's prediction; True if kept (False: sampled out, or dropped
        because the buffer is full or the writer closed). Never waits on I/O.

        ``inputs``: one row as a dict of column -> value; several rows as a dict of
        column -> sequence (told apart by its first value being a sequence), a list of
        row dicts or a DataFrame. ``outputs``: a value (stored as ``prediction``), a
        sequence of one per row (for a one-row request, a list of several is that
        row's value), a dict (of the row's outputs, or of columns), or a DataFrame. ``timestamp``: seconds since the epoch (``time.time()``) or a
        datetime; now if omitted. ``shadow``: the answer of a shadow version (not
        returned to the caller). Do not change the objects after logging them.

        Example::

            writer.log("churn", 3, "req-1", {"age": 41}, 0.83, latency_ms=1.2)
        """
        if type(request_id) is not str:
            raise InvalidInput(f"a request id must be a string, got {request_id!r}")
        if self._sampling:
            rate = self._rates.get(deployment, self._rate)
            if rate < 1.0 and (
                rate <= 0.0 or zlib.crc32(request_id.encode()) >= rate * _TWO32  # see keep()
            ):
                self.stats.sampled_out += 1
                return False
        if deployment not in self._names:
            self._names.add(log_name(deployment))
        buf = self._buf
        if self._closed or len(buf) + self._pending_n >= self.max_buffer_rows:
            self.stats.dropped += 1
            return False
        # A deque: its append and the flusher's popleft are atomic, so no lock here.
        buf.append(
            (
                deployment,
                version,
                request_id,
                inputs,
                outputs,
                latency_ms,
                time.time() if timestamp is None else timestamp,
                shadow,
            )
        )
        if len(buf) >= self.max_rows:
            self._wake.set()
        return True

    # -- flushing ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception:  # flush() records its errors; the thread must live on
                log.exception("prediction log: flush failed")

    def flush(self) -> int:
        """Write what is buffered now, in this thread; the number of rows written.
        A failure keeps the rows for the next flush and raises."""
        with self._flush_lock:
            buf = self._buf
            batch = [buf.popleft() for _ in range(len(buf))]
            if self._pending:
                batch = self._pending + batch
                self._pending = []
                self._pending_n = 0
            if not batch:
                return 0
            try:
                written = self._write(batch)
            except Exception as exc:
                keep_n = self.max_buffer_rows
                if len(batch) > keep_n:
                    self.stats.dropped += len(batch) - keep_n
                    batch = batch[-keep_n:]
                self._pending = batch
                self._pending_n = len(batch)
                self.stats.flush_errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                raise
            # Freed a chunk at a time: the last reference to 10,000 requests' inputs
            # dropped at once frees them in one C call (~40 ms for 30 arrays a row) that
            # no other thread can interrupt, a stall of every request in flight.
            while batch:
                del batch[-CHUNK_ROWS:]
            return written

    def _write(self, batch: list[_Record]) -> int:
        import pyarrow.parquet as pq

        from opsloop.core.ids import now_ms
        from opsloop.store.artifacts import ArtifactStore
        from opsloop.store.tables import prediction_segments

        groups: dict[tuple[str, int | None, bool], list[_Record]] = {}
        for rec in batch:
            groups.setdefault((rec[0], rec[1], rec[7]), []).append(rec)
        rows: list[dict[str, Any]] = []
        for (deployment, version, shadow), records in groups.items():
            try:
                table, inputs, outputs = _chunked_table(records)
            except Exception as exc:  # data that cannot be stored: counted, not retried
                self.stats.dropped += len(records)
                self.stats.last_error = f"{deployment}: {exc}"
                log.error(
                    "prediction log: %d rows of %r dropped: %s", len(records), deployment, exc
                )
                continue
            out = io.BytesIO()
            pq.write_table(
                table, out, compression=self.compression, use_dictionary=_dictionary(table)
            )
            data = out.getvalue()
            sha, size = self.store.blobs.put_bytes(data)
            ts = table.column("timestamp")
            lo, hi = _span_ms(ts)
            role = "shadow" if shadow else "served"
            rows.append(
                {
                    "deployment": deployment,
                    "version": version,
                    "shadow": shadow,
                    "min_time": lo,
                    "max_time": hi,
                    "num_rows": table.num_rows,
                    "sha256": sha,
                    "size_bytes": size,
                    "artifact_path": (
                        f"{ROOT}/{deployment}/{'v' + str(version) if version is not None else 'none'}"
                        f"-{role}/{lo}-{sha[:16]}.parquet"
                    ),
                    "schema": json.dumps(
                        {
                            "inputs": inputs,
                            "outputs": outputs,
                            "columns": {f.name: str(f.type) for f in table.schema},
                        }
                    ),
                    "creation_time": now_ms(),
                }
            )
        if rows:
            with self.store.db.write() as conn:
                conn.execute(prediction_segments.insert(), rows)
                for r in rows:
                    ArtifactStore.index_in(conn, r["artifact_path"], r["sha256"], r["size_bytes"])
        written = sum(int(r["num_rows"]) for r in rows)
        self.stats.segments += len(rows)
        self.stats.written += written
        self.stats.logged += len(batch)
        return written

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and flush everything buffered (the server calls it on
        SIGTERM). Later ``log`` calls are dropped. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.flush()
        finally:
            _writers.discard(self)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Rows waiting for a flush."""
        return len(self._buf) + len(self._pending)


def _dictionary(table: pa.Table) -> list[str]:
    """The columns worth Parquet's dictionary encoding: text ones (a category, a plan
    name), not request ids (each unique) nor numbers (mostly distinct: a dictionary of
    30 float columns tripled the encoding time, 2.3 against 0.9 µs a row, and made the
    file bigger)."""
    import pyarrow as pa

    return [
        f.name
        for f in table.schema
        if f.name != "request_id"
        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]


# -- records to a table ----------------------------------------------------------------


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    raise InvalidInput(f"a timestamp must be seconds since the epoch or a datetime, got {value!r}")


def _is_seq(v: Any) -> bool:
    return not isinstance(v, _SCALARS) and hasattr(v, "__len__") and not isinstance(v, bytes | dict)


def _tolist(v: Any) -> list[Any]:
    tolist = getattr(v, "tolist", None)
    return list(tolist()) if tolist is not None else list(v)


def _rows(value: Any, what: str) -> list[Any]:
    """One request's inputs as row dicts: a dict is one row unless its first value is
    a sequence (then it is a dict of columns), a list of row dicts, or a DataFrame."""
    if isinstance(value, Mapping):
        if not value or not _is_seq(next(iter(value.values()))):
            return [value]
        cols = {str(k): (_tolist(v) if _is_seq(v) else None) for k, v in value.items()}
        if any(v is None for v in cols.values()):
            raise InvalidInput(
                f"{what}: a dict of columns needs a sequence for every column (or give one "
                "row as a dict of values)"
            )
        lengths = {len(v) for v in cols.values() if v is not None}
        if len(lengths) > 1:
            raise InvalidInput(f"{what} columns have different lengths: {sorted(lengths)}")
        keys = list(cols)
        return [dict(zip(keys, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return list(value.to_dict("records"))
    if isinstance(value, list | tuple) and all(isinstance(r, Mapping) for r in value):
        return list(value)
    raise InvalidInput(
        f"{what} must be a dict (one row, or columns), a list of row dicts or a DataFrame, "
        f"got {type(value).__name__}"
    )


def _out_rows(value: Any, n: int, rid: str) -> list[Any]:
    """One request's outputs as ``n`` row dicts: a value (``prediction``), a sequence of
    one per row, a dict of the row's outputs (one row) or of columns, or a DataFrame."""
    if isinstance(value, Mapping):
        if n == 1:
            return [
                {
                    k: (v[0] if len(v) == 1 else _tolist(v)) if _is_seq(v) else v
                    for k, v in value.items()
                }
            ]
        rows = _rows(value, "outputs")
    elif hasattr(value, "to_dict") and hasattr(value, "columns"):
        rows = list(value.to_dict("records"))
    elif _is_seq(value):
        vals = _tolist(value)
        if n == 1:
            return [{OUTPUT: vals[0] if len(vals) == 1 else vals}]
        rows = [{OUTPUT: v} for v in vals]
    else:
        return [{OUTPUT: value}] * n
    if len(rows) != n:
        raise InvalidInput(f"request {rid!r}: {n} input rows but {len(rows)} outputs")
    return rows


def _records_table(records: Sequence[_Record]) -> tuple[pa.Table, list[str], list[str]]:
    """One group's rows as an Arrow table; the input and output column names.

    The rows' dicts become Arrow struct arrays in one call each (Arrow's C++ converter
    infers the types), which is what keeps a flush at ~5 µs of the GIL per 30-column
    row instead of ~20 µs in a Python loop over the values.
    """
    import numpy as np
    import pyarrow as pa

    req: list[str] = []
    row: list[int] = []
    stamps: list[float] = []
    lat: list[float] = []
    in_rows: list[Any] = []
    out_rows: list[Any] = []
    in_cols: list[tuple[str, pa.Array]] | None = None
    out_cols: list[tuple[str, pa.Array]] | None = None
    fast = _block_columns(records)
    if fast is None:
        if any(type(r[3]) is ColumnBlock for r in records):  # mixed with other inputs
            records = [
                (*r[:3], r[3].columns(), *r[4:]) if type(r[3]) is ColumnBlock else r
                for r in records
            ]
        fast = _array_columns([r[3] for r in records])
    if fast is not None:
        # What the server logs: every request a dict of the same columns, 1-D arrays.
        in_cols, counts = fast
        out_fast = _array_columns([{OUTPUT: r[4]} for r in records], counts)
        out_cols = None if out_fast is None else out_fast[0]
        for (_dep, _ver, rid, _in, outputs, latency, stamp, _shadow), n in zip(
            records, counts, strict=True
        ):
            if not n:
                continue
            if out_cols is None:
                out_rows.extend(_out_rows(outputs, n, rid))
            req.extend([rid] * n)
            row.extend(range(n))
            stamps.extend([stamp if type(stamp) is float else _seconds(stamp)] * n)
            lat.extend([float(latency)] * n)
    for _dep, _ver, rid, inputs, outputs, latency, stamp, _shadow in () if fast else records:
        if type(inputs) is dict and (not inputs or not _is_seq(next(iter(inputs.values())))):
            in_rows.append(inputs)  # the common case: one row
            n = 1
            out_rows.append({OUTPUT: outputs} if isinstance(outputs, _SCALARS) else None)
            if out_rows[-1] is None:
                out_rows[-1:] = _out_rows(outputs, 1, rid)
            req.append(rid)
            row.append(0)
            stamps.append(stamp if type(stamp) is float else _seconds(stamp))
            lat.append(float(latency))
            continue
        rows = _rows(inputs, "inputs")
        n = len(rows)
        if not n:
            continue
        in_rows.extend(rows)
        out_rows.extend(_out_rows(outputs, n, rid))
        req.extend([rid] * n)
        row.extend(range(n))
        stamps.extend([_seconds(stamp)] * n)
        lat.extend([float(latency)] * n)
    total = len(req)
    micros = (np.asarray(stamps, dtype="float64") * 1e6).round().astype("int64")
    arrays: dict[str, Any] = {
        "request_id": pa.array(req, pa.string()),
        "timestamp": pa.array(micros, pa.timestamp("us", tz="UTC")),
        "version": pa.array([records[0][1]] * total, pa.int64()),
        "latency_ms": pa.array(lat, pa.float64()),
        "row": pa.array(row, pa.int32()),
        "shadow": pa.array([records[0][7]] * total, pa.bool_()),
    }
    inputs_named: list[str] = []
    outputs_named: list[str] = []
    for rows, names, prefix in (
        (in_rows, inputs_named, "input."),
        (out_rows, outputs_named, "output."),
    ):
        given = in_cols if rows is in_rows else out_cols
        columns = given if given is not None else _struct_columns(rows)
        for key, column in columns:
            name = prefix + key if key in RESERVED or key in arrays else key
            arrays[name] = column
            names.append(name)
    return pa.table(arrays), inputs_named, outputs_named


# The dtypes whose arrays are stored as their ``tolist()`` values would be: (kind, Arrow type).
_FAST_KINDS = {"b": "bool", "i": "int64", "u": "int64", "f": "float64"}
_NDIM = operator.attrgetter("ndim")
_DTYPE = operator.attrgetter("dtype")


def _array_columns(
    values: list[Any], counts: list[int] | None = None
) -> tuple[list[tuple[str, pa.Array]], list[int]] | None:
    """Dicts of columns (the same names in each) whose values are 1-D numpy arrays of a
    number or bool dtype, as one Arrow column per name, and each dict's row count; None
    for anything else (or rows of other counts than ``counts``), which takes the row-dict
    path. The column's type is the one the row-dict path gives the arrays' ``tolist()``
    values, at the cost of one ``np.concatenate`` per column instead of a Python object
    per value (~40 µs of the GIL per 30-column row)."""
    import numpy as np
    import pyarrow as pa

    if not values or type(values[0]) is not dict or not values[0]:
        return None
    keys = tuple(values[0])
    if not all(type(k) is str for k in keys) or any(
        type(v) is not dict or tuple(v) != keys for v in values
    ):
        return None
    sizes = counts
    columns = []
    for key in keys:
        part = [v[key] for v in values]
        if set(map(type, part)) != {np.ndarray} or set(map(_NDIM, part)) != {1}:
            return None
        dtypes = set(map(_DTYPE, part))
        if len(dtypes) != 1:
            return None  # mixed dtypes: the row-dict path decides
        dtype = dtypes.pop()
        if dtype.kind not in _FAST_KINDS or (dtype.kind == "u" and dtype.itemsize >= 8):
            return None  # not a number, or a uint64 that may not fit an int64
        lengths = list(map(len, part))
        if sizes is None:
            sizes = lengths
        elif lengths != sizes:
            return None
        data = np.concatenate(part).astype(_FAST_KINDS[dtype.kind], copy=False)
        columns.append((key, pa.array(data)))
    assert sizes is not None
    return columns, sizes


def _block_columns(
    records: Sequence[_Record],
) -> tuple[list[tuple[str, pa.Array]], list[int]] | None:
    """Records whose inputs are all :class:`ColumnBlock` of the same names and one number
    or bool dtype, as one Arrow column per name, and each record's row count: one
    ``np.concatenate`` of the blocks, then a contiguous copy per column. None otherwise."""
    import numpy as np
    import pyarrow as pa

    first = records[0][3] if records else None
    if type(first) is not ColumnBlock:
        return None
    names, dtype = first.names, first.block.dtype
    if dtype.kind not in _FAST_KINDS or (dtype.kind == "u" and dtype.itemsize >= 8):
        return None
    blocks = []
    for r in records:
        b = r[3]
        if type(b) is not ColumnBlock or (b.names is not names and b.names != names):
            return None
        if b.block.dtype != dtype:
            return None
        blocks.append(b.block)
    counts = [len(b) for b in blocks]
    # Columns contiguous: one transposed copy, each row of it a column.
    by_column = np.ascontiguousarray(np.concatenate(blocks).T, dtype=_FAST_KINDS[dtype.kind])
    return [(name, pa.array(by_column[j])) for j, name in enumerate(names)], counts


def _chunked_table(records: Sequence[_Record]) -> tuple[pa.Table, list[str], list[str]]:
    """``_records_table`` a chunk at a time: Arrow's conversion holds the GIL for a whole
    call, so a flush of 50,000 rows in one call would stall the server's request
    threads for a quarter of a second; chunks of ``CHUNK_ROWS`` hold it ~4 ms at most
    for 30 columns, under Python's switch interval (5 ms) that any thread may hold it
    for anyway. (Chunks of 256 rows halved the flush throughput.)"""
    import pyarrow as pa

    if len(records) <= CHUNK_ROWS:
        return _records_table(records)
    parts = []
    inputs: list[str] = []
    outputs: list[str] = []
    for i in range(0, len(records), CHUNK_ROWS):
        table, ins, outs = _records_table(records[i : i + CHUNK_ROWS])
        parts.append(table)
        inputs += [c for c in ins if c not in inputs]
        outputs += [c for c in outs if c not in outputs]
    try:
        return pa.concat_tables(parts, promote_options="permissive"), inputs, outputs
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column's type differs between chunks
        return _records_table(records)


def _struct_columns(rows: list[Any]) -> list[tuple[str, Any]]:
    """Row dicts as (name, Arrow column) pairs, in first-seen column order; a column of
    mixed types is stored as text."""
    import pyarrow as pa

    try:
        struct = pa.array(rows)
        if not pa.types.is_struct(struct.type):
            raise TypeError("not rows")
        return [(struct.type.field(i).name, struct.field(i)) for i in range(struct.type.num_fields)]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    cols: dict[str, list[Any]] = {}
    for i, r in enumerate(rows):
        for k, v in r.items():
            col = cols.get(str(k))
            if col is None:
                col = cols[str(k)] = [None] * i
            col.append(v)
        for col in cols.values():
            if len(col) < i + 1:
                col.append(None)
    return [(k, _array(v)) for k, v in cols.items()]


def _array(values: list[Any]) -> pa.Array:
    """An Arrow column of Python values; mixed types are stored as text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _span_ms(ts: Any) -> tuple[int, int]:
    import pyarrow.compute as pc

    mm = pc.min_max(ts)
    lo, hi = mm["min"].value, mm["max"].value  # microseconds
    return int(lo // 1000), int(-(-hi // 1000))


# -- reading ---------------------------------------------------------------------------


def to_seconds(value: Any, what: str) -> float | None:
    """A window bound as seconds since the epoch: a datetime (naive: UTC), an ISO 8601
    string, a timedelta (that long ago), or a number of seconds since the epoch (a
    number past 10^11 is read as milliseconds)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return time.time() - value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidInput(f"{what} must be a finite time, got {value!r}")
        return float(value) / 1000.0 if abs(value) >= 1e11 else float(value)
    if isinstance(value, datetime):
        return _seconds(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_seconds(float(text), what)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"{what} {value!r} is not a time: give ISO 8601 (2026-11-23T16:00:00Z) "
                "or seconds since the epoch"
            ) from None
        return _seconds(parsed)
    raise InvalidInput(
        f"{what} must be a datetime, an ISO 8601 string, a timedelta or seconds since the "
        f"epoch, got {value!r}"
    )


@dataclass(frozen=True)
class Segment:
    """One indexed Parquet segment of a prediction log."""

    segment_id: int
    deployment: str
    version: int | None
    shadow: bool
    min_time: int
    max_time: int
    num_rows: int
    sha256: str
    artifact_path: str
    schema: dict[str, Any]


class PredictionLog:
    """Reading a prediction log and adding labels to it, on one store.

    Example::

        plog = PredictionLog(store)
        plog.read("churn", since=datetime(2026, 11, 23, tzinfo=UTC), with_labels=True)
        plog.log_labels("churn", [{"request_id": "req-1", "label": 1}])
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def _known(self, deployment: str) -> bool:
        import sqlalchemy as sa

        from opsloop.store.tables import deployments, prediction_segments

        with self.store.db.read() as conn:
            if conn.execute(
                sa.select(deployments.c.name).where(deployments.c.name == deployment)
            ).first():
                return True
            return (
                conn.execute(
                    sa.select(prediction_segments.c.segment_id)
                    .where(prediction_segments.c.deployment == deployment)
                    .limit(1)
                ).first()
                is not None
            )

    def _require(self, deployment: str) -> None:
        if not self._known(deployment):
            raise NotFound(f"deployment {deployment!r} does not exist and has no prediction log")

    def segments(
        self,
        deployment: str,
        since: Any = None,
        until: Any = None,
        version: int | None = None,
        shadow: bool | None = False,
    ) -> list[Segment]:
        """The segments whose time span overlaps ``[since, until)``, oldest first."""
        import sqlalchemy as sa

        from opsloop.store.tables import prediction_segments as P

        deployment = log_name(deployment)
        lo, hi = to_seconds(since, "since"), to_seconds(until, "until")
        q = sa.select(P).where(P.c.deployment == deployment)
        if lo is not None:
            q = q.where(P.c.max_time >= math.floor(lo * 1000))
        if hi is not None:
            q = q.where(P.c.min_time <= math.ceil(hi * 1000))
        if version is not None:
            q = q.where(P.c.version == int(version))
        if shadow is not None:
            q = q.where(P.c.shadow == shadow)
        q = q.order_by(P.c.min_time, P.c.segment_id)
        with self.store.db.read() as conn:
            return [
                Segment(
                    int(r.segment_id),
                    r.deployment,
                    None if r.version is None else int(r.version),
                    bool(r.shadow),
                    int(r.min_time),
                    int(r.max_time),
                    int(r.num_rows),
                    r.sha256,
                    r.artifact_path,
                    json.loads(r.schema),
                )
                for r in conn.execute(q)
            ]

    def _table(self, sha: str) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.store.blobs.get_bytes(sha)))

    def read(
        self,
        deployment: str,
        since: Any = None,
        until: Any = None,
        version: int | None = None,
        with_labels: bool = False,
        *,
        shadow: bool | None = False,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The predictions logged in ``[since, until)`` as a DataFrame, oldest first:
        request_id, timestamp (UTC), version, latency_ms, the input columns, the output
        column(s), and ``label`` with ``with_labels``. ``shadow``: False (served answers,
        the default), True (only shadow answers), None (both, with a ``shadow`` column).
        Requests of several rows get a ``row`` column.
        """
        import pandas as pd
        import pyarrow as pa
        import pyarrow.compute as pc

        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise InvalidInput(f"limit must be a positive integer, got {limit!r}")
        segs = self.segments(deployment, since, until, version, shadow)
        if not segs:
            self._require(deployment)
        lo, hi = to_seconds(since, "since"), to_seconds(until, "until")
        inputs: list[str] = []
        outputs: list[str] = []
        tables = []
        for seg in segs:
            t = self._table(seg.sha256)
            mask = None
            if lo is not None and seg.min_time < lo * 1000:
                mask = pc.greater_equal(t["timestamp"], _stamp(lo))
            if hi is not None and seg.max_time >= hi * 1000:
                m2 = pc.less(t["timestamp"], _stamp(hi))
                mask = m2 if mask is None else pc.and_(mask, m2)
            if mask is not None:
                t = t.filter(mask)
            if t.num_rows:
                tables.append(t)
            for name in seg.schema.get("inputs", []):
                if name not in inputs:
                    inputs.append(name)
            for name in seg.schema.get("outputs", []):
                if name not in outputs:
                    outputs.append(name)
        if tables:
            try:
                table = pa.concat_tables(tables, promote_options="permissive")
                df = table.to_pandas()
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
            # stable: rows of one time keep the order they were logged in
            df = df.sort_values("timestamp", kind="stable")
            if limit is not None:
                df = df.head(limit)
            df = df.reset_index(drop=True)
        else:
            df = pd.DataFrame(
                {
                    "request_id": pd.Series([], dtype="object"),
                    "timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
                    "version": pd.Series([], dtype="Int64"),
                    "latency_ms": pd.Series([], dtype="float64"),
                    "row": pd.Series([], dtype="int32"),
                    "shadow": pd.Series([], dtype="bool"),
                }
            )
        if with_labels:
            df = self._join_labels(deployment, df, lo)
        cols = list(META)
        if len(df) and (df["row"] != 0).any():
            cols.append("row")
        if shadow is None:
            cols.append("shadow")
        cols += [c for c in (*inputs, *outputs) if c in df.columns]
        if with_labels:
            cols.append("label")
        return df[cols]

    # -- labels --------------------------------------------------------------------------

    def log_labels(self, deployment: str, data: Any) -> int:
        """Store ground truth for logged requests: ``data`` has ``request_id`` and
        ``label`` (and optionally ``row``, for requests of several rows) - a DataFrame,
        a list of row dicts, or a dict of columns. Joined to the predictions when read;
        a later label of a request replaces an earlier one. Returns the rows stored.

        Example::

            plog.log_labels("churn", {"request_id": ["r1", "r2"], "label": [1, 0]})
        """
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        from opsloop.core.ids import now_ms
        from opsloop.store.artifacts import ArtifactStore
        from opsloop.store.tables import prediction_label_segments

        deployment = log_name(deployment)
        frame = _label_frame(data)
        self._require(deployment)
        now = now_ms()
        table = pa.table(
            {
                "request_id": pa.array(frame["request_id"].tolist(), pa.string()),
                "row": pa.array([None if pd.isna(v) else int(v) for v in frame["row"]], pa.int32()),
                "label": _array(frame["label"].tolist()),
                "label_time": pa.array([now * 1000] * len(frame), pa.timestamp("us", tz="UTC")),
            }
        )
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd")
        sha, size = self.store.blobs.put_bytes(out.getvalue())
        path = f"{ROOT}/{deployment}/labels/{now}-{sha[:16]}.parquet"
        with self.store.db.write() as conn:
            conn.execute(
                prediction_label_segments.insert().values(
                    deployment=deployment,
                    min_time=now,
                    max_time=now,
                    num_rows=table.num_rows,
                    sha256=sha,
                    size_bytes=size,
                    artifact_path=path,
                    creation_time=now,
                )
            )
            ArtifactStore.index_in(conn, path, sha, size)
        return int(table.num_rows)

    def labels(self, deployment: str, since: Any = None) -> pd.DataFrame:
        """The labels that arrived from ``since`` on (less ``LABEL_CLOCK_SKEW_S``):
        request_id, row (None: every row of the request), label, label_time; the latest
        per request (and row)."""
        import pandas as pd
        import pyarrow as pa
        import sqlalchemy as sa

        from opsloop.store.tables import prediction_label_segments as L

        deployment = log_name(deployment)
        lo = to_seconds(since, "since")
        q = sa.select(L.c.segment_id, L.c.sha256).where(L.c.deployment == deployment)
        if lo is not None:
            q = q.where(L.c.max_time >= math.floor((lo - LABEL_CLOCK_SKEW_S) * 1000))
        with self.store.db.read() as conn:
            segs = conn.execute(q.order_by(L.c.segment_id)).all()
        tables = [self._table(s.sha256) for s in segs]
        if not tables:
            return pd.DataFrame(
                {
                    "request_id": pd.Series([], dtype="object"),
                    "row": pd.Series([], dtype="Int32"),
                    "label": pd.Series([], dtype="object"),
                    "label_time": pd.Series([], dtype="datetime64[us, UTC]"),
                }
            )
        try:
            df = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        df["row"] = df["row"].astype("Int32")
        key = df["row"].fillna(-1)
        df = df.assign(_key=key).drop_duplicates(["request_id", "_key"], keep="last")
        return df.drop(columns="_key").reset_index(drop=True)

    def _join_labels(self, deployment: str, df: pd.DataFrame, since: float | None) -> pd.DataFrame:
        import pandas as pd

        if not len(df):
            return df.assign(label=pd.Series([], dtype="object"))
        labels = self.labels(deployment, since)
        if not len(labels):
            return df.assign(label=None)
        exact = labels[labels["row"].notna()][["request_id", "row", "label"]]
        exact = exact.assign(row=exact["row"].astype("int32"))
        general = labels[labels["row"].isna()][["request_id", "label"]]
        out = df.merge(
            exact.rename(columns={"label": "_label_row"}), on=["request_id", "row"], how="left"
        )
        out = out.merge(
            general.rename(columns={"label": "_label_any"}), on="request_id", how="left"
        )
        out["label"] = out["_label_row"].where(out["_label_row"].notna(), out["_label_any"])
        return out.drop(columns=["_label_row", "_label_any"])


def _stamp(seconds: float) -> Any:
    import pyarrow as pa

    return pa.scalar(round(seconds * 1e6), pa.timestamp("us", tz="UTC"))


def _label_frame(data: Any) -> pd.DataFrame:
    """``data`` as a frame of request_id (text), row (nullable int) and label, checked."""
    import pandas as pd

    if hasattr(data, "columns") and hasattr(data, "to_dict"):
        frame = pd.DataFrame(data)
    elif isinstance(data, Mapping):
        try:
            frame = pd.DataFrame(dict(data))
        except ValueError as exc:
            raise InvalidInput(f"labels: the columns must have one length each ({exc})") from None
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        rows = list(data)
        if not all(isinstance(r, Mapping) for r in rows):
            raise InvalidInput("labels: give a DataFrame, a dict of columns or a list of row dicts")
        frame = pd.DataFrame(rows)
    else:
        raise InvalidInput("labels: give a DataFrame, a dict of columns or a list of row dicts")
    missing = [c for c in ("request_id", "label") if c not in frame.columns]
    if missing:
        raise InvalidInput(
            f"labels need the columns request_id and label; missing: {', '.join(missing)}"
        )
    extra = sorted(set(map(str, frame.columns)) - {"request_id", "label", "row"})
    if extra:
        raise InvalidInput(f"labels: unknown columns {extra}; give request_id, label and row")
    if not len(frame):
        raise InvalidInput("labels: no rows given")
    if len(frame) > MAX_LABEL_ROWS:
        raise InvalidInput(f"labels: at most {MAX_LABEL_ROWS} rows at once, got {len(frame)}")
    ids = frame["request_id"]
    bad = ids[ids.isna() | ~ids.map(lambda v: isinstance(v, str | int) and not isinstance(v, bool))]
    if len(bad) or (ids.astype(str) == "").any():
        raise InvalidInput(
            "labels: every request_id must be a non-empty string"
            + (f" (row {bad.index[0]}: {bad.iloc[0]!r})" if len(bad) else "")
        )
    if frame["label"].isna().any():
        at = int(frame["label"].isna().to_numpy().nonzero()[0][0])
        raise InvalidInput(
            f"labels: the label of request {ids.iloc[at]!r} is missing; leave out requests "
            "with no label yet"
        )
    if any(not isinstance(v, _SCALARS) and not hasattr(v, "item") for v in frame["label"]):
        raise InvalidInput("labels: every label must be a single value (number, text, boolean)")
    if "row" in frame.columns:
        rows_col = pd.to_numeric(frame["row"], errors="coerce")
        given = frame["row"].notna()
        if (
            (rows_col[given].isna()).any()
            or (rows_col[given] < 0).any()
            or (rows_col[given] % 1 != 0).any()
        ):
            raise InvalidInput("labels: row must be a whole number >= 0 (or empty: every row)")
        row = rows_col.astype("Int32")
    else:
        row = pd.Series([pd.NA] * len(frame), dtype="Int32")
    return pd.DataFrame(
        {
            "request_id": ids.astype(str).to_numpy(),
            "row": row.to_numpy(),
            "label": frame["label"].to_numpy(),
        }
    )


# -- on the default store ---------------------------------------------------------------


def _log() -> PredictionLog:
    from opsloop.store import default_service

    return default_service(PredictionLog)


def predictions(
    deployment: str,
    since: Any = None,
    until: Any = None,
    version: int | None = None,
    with_labels: bool = False,
    *,
    shadow: bool | None = False,
    limit: int | None = None,
) -> pd.DataFrame:
    """A deployment's logged predictions in ``[since, until)`` as a DataFrame (see
    ``PredictionLog.read``); times are datetimes, ISO strings, timedeltas (ago) or
    seconds since the epoch.

    Example::

        df = opsloop.serving.predictions("churn", since=timedelta(hours=1), with_labels=True)
        (df["prediction"].round() == df["label"]).mean()
    """
    return _log().read(deployment, since, until, version, with_labels, shadow=shadow, limit=limit)


def log_labels(deployment: str, data: Any) -> int:
    """Ground truth for logged requests (``request_id`` and ``label``), joined to their
    predictions when read; the rows stored.

    Example::

        opsloop.serving.log_labels("churn", pd.DataFrame({"request_id": ids, "label": y}))
    """
    return _log().log_labels(deployment, data)


__all__ = [
    "PredictionLog",
    "PredictionWriter",
    "Segment",
    "WriterStats",
    "keep",
    "log_labels",
    "predictions",
]
