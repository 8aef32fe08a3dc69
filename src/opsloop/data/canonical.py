"""The canonical form of a table, and the digest that names it.

A dataset version is identified by the SHA-256 of its content, so the same table
must give the same bytes however it arrives: as a pandas DataFrame, a pyarrow Table,
a CSV or Parquet file, or a folder of them. ``load`` turns each into one Arrow table
and ``canonical_table`` removes what is not content:

- the pandas index and every piece of schema/field metadata (pandas' included);
- the string flavour: ``large_string``/``string_view`` become ``string`` (and the
  same for binary and dictionary values), as pandas and a CSV reader disagree on it;
- NaN in floating columns becomes null, as pandas means the same by both;
- second and millisecond timestamps become microseconds (lossless), and nanosecond
  ones too when every value is a whole microsecond, so a CSV's and a DataFrame's
  times agree;
- the chunk layout (chunks are combined), which would otherwise move page breaks;
- types Parquet does not keep: the table takes the types it reads back as (``date64``
  becomes ``date32``, list items are named ``element``).

``encode`` then writes Parquet with fixed options (below) and hashes the bytes as the
writer emits them. The digest is therefore also the address of the blob in the
artifact store. A caveat: the bytes include the Parquet writer's version, so a
pyarrow upgrade that changes its output makes re-registered content a new version.

Compression: zstd level 1, chosen by measurement on the 1,000,000 x 20 benchmark
frame (bench/dataset_register.py): it wrote faster than snappy (0.44-0.49 s vs
0.8-1.1 s), gave smaller files (115 vs 121 MB on random floats, much smaller on real
data) and read back 2-3x faster.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from opsloop.errors import InvalidInput

SUPPORTED = (
    "a pandas DataFrame, a pyarrow Table, or the path of a CSV or Parquet file "
    "or of a folder of them"
)
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")

# Fixed so that the same table always gives the same bytes. Changing any of these
# changes every digest: treat them as part of the stored format.
PARQUET_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 1,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "row_group_size": 1 << 20,
    "store_schema": True,
    "use_byte_stream_split": False,
    "write_page_index": False,
    "write_page_checksum": False,
    "use_compliant_nested_type": True,
}

_ARROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


@dataclass(frozen=True)
class Loaded:
    """An input read into Arrow: the (not yet canonical) table and where it came from."""

    table: pa.Table
    source_type: str  # dataframe | arrow | csv | parquet | folder
    source: str  # the absolute path, or "dataframe" / "arrow"


@dataclass(frozen=True)
class Encoded:
    """Canonical Parquet bytes and their SHA-256 (hex)."""

    data: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)


def load(data: object) -> Loaded:
    """Read any accepted input into an Arrow table; anything else is ``InvalidInput``.

    Example::

        load(pd.DataFrame({"x": [1, 2]})).table.num_rows      # 2
        load("readings.csv").source_type                      # "csv"
    """
    if isinstance(data, pd.DataFrame):
        return Loaded(from_dataframe(data), "dataframe", "dataframe")
    if isinstance(data, pa.Table):
        return Loaded(data, "arrow", "arrow")
    if isinstance(data, pa.RecordBatch):
        return Loaded(pa.Table.from_batches([data]), "arrow", "arrow")
    if isinstance(data, (str, os.PathLike)):
        return load_path(Path(os.fspath(data)).expanduser())
    raise InvalidInput(f"cannot register a {type(data).__name__}: give {SUPPORTED}")


def from_dataframe(df: Any) -> pa.Table:
    """A pandas DataFrame as an Arrow table, without its index; column names as strings."""
    if isinstance(df.columns, pd.MultiIndex):
        raise InvalidInput(
            "the DataFrame has multi-level column names; flatten them to strings first "
            "(e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns])"
        )
    if df.shape[1] == 0:
        raise InvalidInput("the DataFrame has no columns; a dataset needs at least one")
    if df.shape[0] == 0:
        raise InvalidInput("the DataFrame has no rows; a dataset needs at least one")
    names = [_column_name(c) for c in df.columns]
    _check_unique(names, "the DataFrame")
    if any(not isinstance(c, str) for c in df.columns):
        df = df.set_axis(names, axis=1)
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except _ARROW_ERRORS as exc:
        raise InvalidInput(f"the DataFrame cannot be stored as a table: {exc}") from exc


def _column_name(c: Any) -> str:
    if isinstance(c, str):
        return c
    try:
        s = str(c)
    except Exception as exc:
        raise InvalidInput(
            f"a column name of type {type(c).__name__} cannot be turned into a string ({exc}); "
            "rename the columns to strings"
        ) from exc
    if not isinstance(s, str):
        raise InvalidInput(
            f"a column name of type {type(c).__name__} cannot be turned into a string; "
            "rename the columns to strings"
        )
    return s


def _check_unique(names: list[str], what: str) -> None:
    dups = sorted(n for n, k in Counter(names).items() if k > 1)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:5])
        raise InvalidInput(f"{what} has duplicate column names: {shown}; rename them first")


def load_path(path: Path) -> Loaded:
    """A CSV or Parquet file, or a folder of them (see ``read_folder``)."""
    if path.is_file():
        kind = file_kind(path)
        if kind is None:
            raise InvalidInput(
                f"{path} is not a CSV or Parquet file: its name should end in "
                f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
            )
        return Loaded(read_file(path, kind), kind, str(path.resolve()))
    if path.is_dir():
        return Loaded(read_folder(path), "folder", str(path.resolve()))
    if path.exists():
        raise InvalidInput(f"{path} is neither a regular file nor a folder")
    raise InvalidInput(f"{path} does not exist (give {SUPPORTED})")


def file_kind(path: Path) -> str | None:
    low = path.name.lower()
    if low.endswith(CSV_SUFFIXES):
        return "csv"
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def read_file(path: Path, kind: str) -> pa.Table:
    try:
        if kind == "csv":
            return pacsv.read_csv(path)
        table = pq.read_table(path)
    except _ARROW_ERRORS as exc:
        raise InvalidInput(f"cannot read {path} as {kind.upper()}: {exc}") from exc
    return _drop_pandas_index(table)


def _drop_pandas_index(table: pa.Table) -> pa.Table:
    """A Parquet file written by pandas keeps a non-default index as columns: drop them,
    as a DataFrame's index is dropped."""
    meta = table.schema.metadata or {}
    raw = meta.get(b"pandas")
    if not raw:
        return table
    try:
        index_cols = json.loads(raw).get("index_columns", [])
    except (ValueError, AttributeError):
        return table
    drop = [c for c in index_cols if isinstance(c, str) and c in table.column_names]
    return table.drop_columns(drop) if drop else table


def read_folder(path: Path) -> pa.Table:
    """Every CSV/Parquet file of a folder, concatenated in sorted file-name order.

    Names starting with ``.`` or ``_`` are skipped (``_SUCCESS``, ``.crc``: the
    convention of Spark and Hive). All files must share one schema.
    """
    files: list[tuple[Path, str]] = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith((".", "_")):
            continue
        p = path / entry
        if p.is_dir():
            raise InvalidInput(
                f"{path} holds a sub-folder {entry!r}: only a flat folder of CSV or Parquet "
                "files can be registered"
            )
        kind = file_kind(p)
        if kind is None:
            raise InvalidInput(
                f"{p} in the folder is not a CSV or Parquet file; move it out or rename it "
                "to start with '_'"
            )
        files.append((p, kind))
    if not files:
        raise InvalidInput(f"{path} holds no CSV or Parquet files")
    tables: list[pa.Table] = []
    first: pa.Schema | None = None
    for p, kind in files:
        t = canonical_table(read_file(p, kind), what=str(p), allow_empty_rows=True)
        if first is None:
            first = t.schema
        else:
            _same_schema(first, t.schema, files[0][0], p)
        tables.append(t)
    if len(tables) == 1:
        return tables[0]
    # Nullability may differ between files (Parquet keeps it, CSV does not): the
    # concatenation is nullable where any file is.
    assert first is not None
    unified = pa.schema(
        [
            f.with_nullable(any(t.schema.field(i).nullable for t in tables))
            for i, f in enumerate(first)
        ]
    )
    return pa.concat_tables([t.cast(unified) for t in tables])


def _same_schema(a: pa.Schema, b: pa.Schema, a_path: Path, b_path: Path) -> None:
    if a.names != b.names:
        missing = [n for n in a.names if n not in b.names]
        extra = [n for n in b.names if n not in a.names]
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra:
            detail.append(f"extra {extra}")
        if not detail:
            detail.append(f"columns in another order: {b.names}")
        raise InvalidInput(
            f"{b_path.name} does not share the schema of {a_path.name}: {'; '.join(detail)}. "
            "All files of a folder must have the same columns and types"
        )
    for fa, fb in zip(a, b, strict=True):
        if fa.type != fb.type:
            raise InvalidInput(
                f"{b_path.name} does not share the schema of {a_path.name}: column "
                f"{fa.name!r} is {fb.type} there and {fa.type} in {a_path.name}. "
                "All files of a folder must have the same columns and types"
            )


# -- canonical table --------------------------------------------------------------


def canonical_table(
    table: pa.Table, *, what: str = "the table", allow_empty_rows: bool = False
) -> pa.Table:
    """The canonical form of ``table`` (see the module docstring); refuses empty tables
    and duplicate column names.

    Example::

        t = canonical_table(pa.table({"s": pa.array(["a"], pa.large_string())}))
        t.schema.field("s").type          # string
    """
    if table.num_columns == 0:
        raise InvalidInput(f"{what} has no columns; a dataset needs at least one")
    if table.num_rows == 0 and not allow_empty_rows:
        raise InvalidInput(f"{what} has no rows; a dataset needs at least one")
    _check_unique(table.column_names, what)
    fields: list[pa.Field] = []
    columns: list[pa.ChunkedArray] = []
    for field, col in zip(table.schema, table.columns, strict=True):
        col = _canonical_column(col)
        fields.append(pa.field(field.name, col.type, nullable=field.nullable))
        columns.append(col)
    try:
        out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    except _ARROW_ERRORS as exc:
        raise InvalidInput(f"{what} cannot be stored as a table: {exc}") from exc
    # Take the types Parquet gives back (date64 -> date32, list items named "element"),
    # so the recorded schema and profile describe exactly what ``get`` returns.
    back = parquet_schema(out.schema, what)
    if back != out.schema:
        with contextlib.suppress(*_ARROW_ERRORS):
            out = out.cast(back)
    return out


def parquet_schema(schema: pa.Schema, what: str = "the table") -> pa.Schema:
    """The schema a table of ``schema`` has after a trip through canonical Parquet."""
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(schema.empty_table(), sink, **PARQUET_OPTIONS)
    except _ARROW_ERRORS as exc:
        raise InvalidInput(f"{what} cannot be written as Parquet: {exc}") from exc
    back: pa.Schema = pq.read_schema(pa.BufferReader(sink.getvalue()))
    return back.remove_metadata()


def _canonical_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    t = col.type
    target = _canonical_type(t)
    if target is not None and target != t:
        # More than 2 GiB of strings cannot be a plain string column: keep the large type.
        with contextlib.suppress(*_ARROW_ERRORS):
            col = col.cast(target)
    if pa.types.is_floating(col.type) and col.length():
        nan = pc.is_nan(col)
        if pc.any(nan).as_py():
            col = pc.if_else(nan, pa.scalar(None, col.type), col)
    if pa.types.is_timestamp(col.type) and col.type.unit == "ns":
        # A value that carries nanoseconds makes the cast fail: then keep them.
        with contextlib.suppress(*_ARROW_ERRORS):
            col = col.cast(pa.timestamp("us", col.type.tz), safe=True)
    if col.num_chunks != 1:
        col = pa.chunked_array([col.combine_chunks()], type=col.type)
    return col


def _canonical_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t) and t.unit in ("s", "ms"):
        return pa.timestamp("us", t.tz)
    if pa.types.is_dictionary(t):
        value = _canonical_type(t.value_type)
        if value is not None:
            return pa.dictionary(t.index_type, value, t.ordered)
    return None


# -- encoding ---------------------------------------------------------------------


class _HashingSink(io.RawIOBase):
    """Where the Parquet writer writes: keeps the bytes and hashes them on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.sha = hashlib.sha256()
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def encode(table: pa.Table) -> Encoded:
    """Canonical Parquet bytes of a canonical table, and their SHA-256.

    Example::

        enc = encode(canonical_table(pa.table({"x": [1, 2, 3]})))
        len(enc.digest)        # 64
    """
    sink = _HashingSink()
    try:
        pq.write_table(table, sink, **PARQUET_OPTIONS)
    except _ARROW_ERRORS as exc:
        raise InvalidInput(f"the table cannot be written as Parquet: {exc}") from exc
    return Encoded(b"".join(sink.parts), sink.sha.hexdigest())


def decode(data: bytes) -> pa.Table:
    """The table of canonical Parquet bytes."""
    return pq.read_table(pa.BufferReader(data))
