"""Datasets on the store (SQLite and PostgreSQL) and through ``opsloop.data`` with a run."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

import opsloop
import opsloop.data
from opsloop.core.config import Settings
from opsloop.data import DatasetProfile, DatasetService
from opsloop.data.service import prepare
from opsloop.errors import InvalidInput, NotFound
from opsloop.store import Store
from opsloop.store.tables import artifact_files, dataset_names, dataset_versions


def frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temp = rng.normal(20, 5, n)
    temp[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "temp": temp,
            "count": rng.integers(0, 100, n),
            "site": rng.choice(["north", "south", "east"], n),
            "ok": rng.random(n) < 0.9,
            "ts": pd.Timestamp("2026-05-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )


def stored(store: Store) -> tuple[int, int, int, int]:
    """Rows in dataset_names, dataset_versions, artifact_files, and blobs on disk."""
    with store.db.read() as conn:
        counts = [
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (dataset_names, dataset_versions, artifact_files)
        ]
    objects = Path(store.blobs.root) / "objects"
    blobs = sum(len(files) for _, _, files in os.walk(objects))
    return (*counts, blobs)  # type: ignore[return-value]


@pytest.fixture
def svc(store: Store) -> DatasetService:
    return DatasetService(store)


# -- round trips --------------------------------------------------------------------


def test_every_input_kind_gives_one_digest(svc: DatasetService, tmp_path: Path) -> None:
    df = frame()
    csv = tmp_path / "sensors.csv"
    df.to_csv(csv, index=False)
    parquet = tmp_path / "sensors.parquet"
    df.to_parquet(parquet)
    folder = tmp_path / "parts"
    folder.mkdir()
    # Written out of name order: the folder is read in sorted file-name order.
    df.iloc[250:].to_csv(folder / "b.csv", index=False)
    df.iloc[:250].to_csv(folder / "a.csv", index=False)
    (folder / "_SUCCESS").write_text("")
    pq_folder = tmp_path / "pq-parts"
    pq_folder.mkdir()
    df.iloc[:100].to_parquet(pq_folder / "part-0.parquet")
    df.iloc[100:].to_parquet(pq_folder / "part-1.parquet")

    first = svc.register(df, "sensors", description="hourly readings")
    assert first.is_new and first.version == 1 and first.ref == "sensors@1"
    assert first.source_type == "dataframe" and first.source == "dataframe"
    inputs: list[Any] = [
        pa.Table.from_pandas(df),
        csv,
        str(parquet),
        folder,
        pq_folder,
        df.set_index("site", drop=False),  # the index is not part of the data
    ]
    for data in inputs:
        dv = svc.register(data, "sensors")
        assert (dv.version, dv.digest, dv.is_new) == (1, first.digest, False), data
    assert [v.version for v in svc.versions("sensors")] == [1]
    # The stored record.
    assert first.num_rows == 500 and first.columns == list(df.columns)
    assert [(c.name, c.type) for c in first.schema] == [
        ("temp", "double"),
        ("count", "int64"),
        ("site", "string"),
        ("ok", "bool"),
        ("ts", "timestamp[us]"),
    ]
    assert first.artifact_path == f"datasets/sensors/{first.digest}.parquet"
    assert store_bytes(svc, first.artifact_path)[:4] == b"PAR1"
    assert first.description == "hourly readings"
    # Every way back gives the same table.
    back = svc.read_table(first).to_pandas()
    pd.testing.assert_frame_equal(back, df)
    by_source = {
        "csv": svc.register(csv, "from-csv"),
        "parquet": svc.register(parquet, "from-parquet"),
        "folder": svc.register(folder, "from-folder"),
    }
    for kind, dv in by_source.items():
        assert dv.source_type == kind and dv.source.endswith(Path(dv.source).name)
        assert dv.digest == first.digest
        assert Path(dv.source).is_absolute()


def store_bytes(svc: DatasetService, path: str) -> bytes:
    return svc.store.artifacts.get_bytes(path)


def test_canonical_form_hides_representation(svc: DatasetService) -> None:
    """NaN vs null, large vs plain strings, chunking and metadata do not change the digest."""
    base = pa.table({"x": pa.array([1.0, None, 3.0]), "s": pa.array(["a", "b", None])})
    variants = [
        pa.table(
            {"x": [1.0, float("nan"), 3.0], "s": pa.array(["a", "b", None], pa.large_string())}
        ),
        pa.Table.from_batches(base.to_batches(max_chunksize=1)),
        base.replace_schema_metadata({"origin": "elsewhere"}),
    ]
    d0 = svc.register(base, "canon").digest
    for t in variants:
        assert svc.register(t, "canon").digest == d0
    # Second-resolution timestamps are stored as microseconds, losslessly.
    secs = pa.table({"t": pa.array([0, 86_400], pa.timestamp("s"))})
    micros = pa.table({"t": pa.array([0, 86_400_000_000], pa.timestamp("us"))})
    assert svc.register(secs, "times").digest == svc.register(micros, "times").digest


def test_versions_numbering_and_lookup(svc: DatasetService) -> None:
    v1 = svc.register(frame(seed=1), "sensors")
    v2 = svc.register(frame(seed=2), "sensors")
    again = svc.register(frame(seed=1), "sensors")
    v3 = svc.register(frame(seed=3), "sensors", produced_by_step="clean")
    assert (v1.version, v2.version, again.version, v3.version) == (1, 2, 1, 3)
    assert not again.is_new and v3.produced_by_step == "clean"
    assert len({v1.digest, v2.digest, v3.digest}) == 3
    assert [v.version for v in svc.versions("sensors")] == [1, 2, 3]
    for ref, want in [
        ("sensors", 3),
        ("sensors@latest", 3),
        ("sensors@2", 2),
        (f"sensors@{v1.digest}", 1),
        (f"sensors@{v2.digest[:8]}", 2),
        (f"sensors@{v2.digest[:8].upper()}", 2),
    ]:
        assert svc.get_version(ref).version == want, ref
    assert svc.get_version("sensors", 2).digest == v2.digest
    assert svc.get_version("sensors", "LATEST").version == 3
    assert svc.get_version("sensors", v1.digest[:6]).version == 1
    # Same content under another name is another dataset (the blob is shared).
    other = svc.register(frame(seed=1), "sensors-copy")
    assert other.version == 1 and other.digest == v1.digest
    listed = {d.name: d for d in svc.list_datasets()}
    assert set(listed) == {"sensors", "sensors-copy"}
    s = listed["sensors"]
    assert (s.num_versions, s.latest_version, s.latest_digest) == (3, 3, v3.digest)
    assert (s.num_rows, s.num_columns) == (500, 5)
    assert svc.find_by_run("0" * 32) == []


def test_unknown_names_and_versions(svc: DatasetService) -> None:
    svc.register(frame(), "sensors")
    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        svc.get_version("nope")
    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        svc.versions("nope")
    with pytest.raises(NotFound, match="has no version 7"):
        svc.get_version("sensors@7")
    with pytest.raises(NotFound, match="has no version ffff"):
        svc.get_version("sensors@ffff")
    with pytest.raises(InvalidInput, match="not a dataset version"):
        svc.get_version("sensors@v1")
    with pytest.raises(InvalidInput, match="do not also pass"):
        svc.get_version("sensors@1", 1)


def test_profile_stored_with_the_version(svc: DatasetService) -> None:
    df = frame(2000)
    dv = svc.register(df, "sensors")
    again = svc.get_version("sensors@1")
    assert again.profile == dv.profile
    temp = again.profile["temp"]
    assert temp.count == df["temp"].notna().sum() and temp.missing == df["temp"].isna().sum()
    assert temp.numeric is not None and temp.numeric.mean == pytest.approx(df["temp"].mean())
    assert temp.numeric.histogram is not None
    assert sum(temp.numeric.histogram.counts) == temp.count
    site = again.profile["site"].categorical
    assert site is not None and dict(site.top) == df["site"].value_counts().to_dict()


def test_diff(svc: DatasetService) -> None:
    df = frame(5000, seed=4)
    svc.register(df, "sensors")
    changed = df.drop(columns=["ok"]).assign(
        temp=df["temp"] + 5.0,  # one std
        count=df["count"].astype(float),
        extra=1,
        site=np.where(np.arange(len(df)) % 2 == 0, "west", df["site"]),
    )
    svc.register(changed.iloc[:4000], "sensors")
    d = svc.diff("sensors@1", "sensors@2")
    assert (d.a, d.b, d.rows_a, d.rows_b) == ("sensors@1", "sensors@2", 5000, 4000)
    assert [c.name for c in d.added] == ["extra"]
    assert [c.name for c in d.removed] == ["ok"]
    assert [(r.column, r.type_a, r.type_b) for r in d.retyped] == [("count", "int64", "double")]
    temp = d.columns["temp"]
    assert temp.psi is not None and temp.psi > 0.25
    assert temp.mean_shift == pytest.approx(1.0, abs=0.1)
    assert temp.std_change == pytest.approx(0.0, abs=0.05)
    count = d.columns["count"]
    assert count.kind == "numeric" and count.psi is not None and count.psi < 0.1
    site = d.columns["site"]
    assert site.kind == "categorical" and site.categories_added == ("west",)
    assert site.tvd == pytest.approx(0.5, abs=0.03)
    assert d.columns["ts"].kind == "datetime"
    assert not d.same_content and d.schema_changed
    json.dumps(d.to_dict(), allow_nan=False)
    same = svc.diff("sensors@1", svc.get_version("sensors@1"))
    assert same.same_content and not same.schema_changed
    assert all(s.psi in (None, 0.0) or abs(s.psi) < 1e-12 for s in same.columns.values())


def test_validation_report_hook(svc: DatasetService) -> None:
    svc.register(frame(), "sensors")
    assert svc.get_version("sensors@1").validation_report is None
    report = {"passed": False, "checks": 2, "failed": 1, "results": []}
    dv = svc.set_validation_report("sensors@1", report)
    assert dv.validation_report == report
    assert svc.get_version("sensors@1").validation_report == report
    with pytest.raises(InvalidInput):
        svc.set_validation_report("sensors@1", {"x": float("nan")})
    with pytest.raises(NotFound):
        svc.set_validation_report("sensors@9", report)


# -- bad input: refused, nothing stored ----------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def _bad_inputs(tmp_path: Path) -> list[tuple[object, object, str]]:
    txt = tmp_path / "notes.txt"
    txt.write_text("a,b\n1,2\n")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_csv(mixed / "1.csv", index=False)
    pd.DataFrame({"a": [1.5, 2.5]}).to_csv(mixed / "2.csv", index=False)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_csv(renamed / "1.csv", index=False)
    pd.DataFrame({"b": [1, 2]}).to_csv(renamed / "2.csv", index=False)
    stray = tmp_path / "stray"
    stray.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_csv(stray / "1.csv", index=False)
    (stray / "README.md").write_text("hi")
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    clash = pd.DataFrame([[1, 2]], columns=[1, "1"])
    good = frame(10)
    return [
        ([1, 2, 3], "sensors", "cannot register a list"),
        ({"a": 1, "b": 2}, "sensors", "cannot register a dict"),
        (42, "sensors", "cannot register a int"),
        (tmp_path / "missing.csv", "sensors", "does not exist"),
        (txt, "sensors", "is not a CSV or Parquet file"),
        (broken, "sensors", "cannot read .* as PARQUET"),
        (mixed, "sensors", "2.csv does not share the schema of 1.csv: column 'a'"),
        (renamed, "sensors", "2.csv does not share the schema of 1.csv: missing"),
        (stray, "sensors", "README.md in the folder is not a CSV or Parquet file"),
        (nested, "sensors", "sub-folder 'sub'"),
        (empty_dir, "sensors", "holds no CSV or Parquet files"),
        (header_only, "sensors", "has no rows"),
        (pd.DataFrame(), "sensors", "has no columns"),
        (pd.DataFrame({"a": pd.Series([], dtype=float)}), "sensors", "has no rows"),
        (pa.table({"a": pa.array([], pa.int64())}), "sensors", "has no rows"),
        (pa.table({}), "sensors", "has no columns"),
        (dup, "sensors", "duplicate column names: 'a'"),
        (clash, "sensors", "duplicate column names: '1'"),
        (pa.table([[1], [2]], names=["x", "x"]), "sensors", "duplicate column names: 'x'"),
        (pd.DataFrame([[1, 2]], columns=[Unprintable(), "b"]), "sensors", "Unprintable"),
        (pd.DataFrame({"a": [1, "x", 2.5]}), "sensors", "cannot be stored as a table"),
        (
            pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b"), ("a", "c")])),
            "sensors",
            "multi-level column names",
        ),
        (good, "bad name", "dataset name 'bad name' is not valid"),
        (good, "sensors@2", "is not valid"),
        (good, "", "non-empty string"),
        (good, "../escape", "is not valid"),
        (good, "x" * 251, "the limit is 250"),
        (good, 7, "non-empty string"),
    ]


def test_bad_input_is_refused_and_nothing_is_stored(svc: DatasetService, tmp_path: Path) -> None:
    for data, name, message in _bad_inputs(tmp_path):
        with pytest.raises(InvalidInput, match=message):
            svc.register(data, name)  # type: ignore[arg-type]
        assert stored(svc.store) == (0, 0, 0, 0), (data, name)
    with pytest.raises(InvalidInput, match="description must be a string"):
        svc.register(frame(), "sensors", description=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="invalid run id"):
        svc.register(frame(), "sensors", run_id="not a run id")
    with pytest.raises(InvalidInput, match="NUL"):
        svc.register(frame(), "sensors", description="a\x00b")
    with pytest.raises(InvalidInput, match="the limit is 32"):
        svc.register(frame(), "sensors", run_id="r" * 33)
    assert stored(svc.store) == (0, 0, 0, 0)
    svc.register(frame(), "sensors")
    assert stored(svc.store) == (1, 1, 1, 1)


# -- concurrency ----------------------------------------------------------------------


def _register_worker(args: tuple[str, str, int, Any, Any]) -> None:
    db_url, artifacts, seed, barrier, results = args
    store = Store(Settings(home=Path(artifacts), database_url=db_url, artifacts_url=artifacts))
    svc = DatasetService(store)
    # Everything but the write happens before the barrier, so the writes race.
    prepared = prepare(frame(200, seed=seed))
    barrier.wait(60)
    dv = svc.store_prepared(prepared, "shared")
    results.put((seed, dv.version, dv.digest, dv.is_new))
    store.close()


def _race(store: Store, seeds: list[int]) -> list[tuple[int, int, str, bool]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(seeds))
    results = ctx.Queue()
    db_url, artifacts = store.settings.database_url, store.settings.artifacts_url
    procs = [
        ctx.Process(target=_register_worker, args=((db_url, artifacts, s, barrier, results),))
        for s in seeds
    ]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return sorted(out)


def test_two_processes_get_distinct_versions(store: Store) -> None:
    out = _race(store, [1, 2])
    assert sorted(v for _, v, _, _ in out) == [1, 2]
    assert all(new for *_, new in out)
    svc = DatasetService(store)
    assert {(v.version, v.digest) for v in svc.versions("shared")} == {(v, d) for _, v, d, _ in out}


def test_two_processes_same_content_one_version(store: Store) -> None:
    out = _race(store, [5, 5])
    assert [v for _, v, _, _ in out] == [1, 1]
    assert sorted(new for *_, new in out) == [False, True]
    assert len(DatasetService(store).versions("shared")) == 1


# -- the module-level API and lineage --------------------------------------------------


def test_module_api_round_trip(home: Path) -> None:
    df = frame()
    dv = opsloop.data.register(df, "sensors", description="first")
    assert dv.run_id is None
    got = opsloop.data.get("sensors")
    pd.testing.assert_frame_equal(got, df)
    table = opsloop.data.get("sensors", 1, as_="arrow")
    assert isinstance(table, pa.Table) and table.num_rows == 500
    assert table.equals(pa.Table.from_pandas(df, preserve_index=False).cast(table.schema))
    pd.testing.assert_frame_equal(opsloop.data.get(f"sensors@{dv.digest[:10]}"), df)
    dv2 = opsloop.data.register(df.iloc[:100], "sensors")
    assert dv2.version == 2
    assert [v.version for v in opsloop.data.versions("sensors")] == [1, 2]
    assert opsloop.data.get_version("sensors").version == 2
    assert len(opsloop.data.get("sensors", "latest")) == 100
    assert [d.name for d in opsloop.data.list_datasets()] == ["sensors"]
    assert opsloop.data.diff("sensors@1", "sensors@2").rows_b == 100
    with pytest.raises(InvalidInput, match="as_ must be"):
        opsloop.data.get("sensors", as_="polars")  # type: ignore[call-overload]
    with pytest.raises(NotFound):
        opsloop.data.get("sensors", 3)


def test_lineage_data_run_model(home: Path, tmp_path: Path) -> None:
    raw = frame(seed=10)
    opsloop.data.register(raw, "raw")
    with opsloop.start_run(experiment="lineage") as run:
        train = opsloop.data.get("raw")  # read: an input
        clean = opsloop.data.register(train.dropna(), "clean", produced_by_step="dropna")
        mv = opsloop.log_model(lambda df: df["temp"] * 2, "doubler")
    assert clean.run_id == run.run_id and clean.produced_by_step == "dropna"
    got = opsloop.get_run(run.run_id)
    inputs = {i.name: i for i in got.inputs}
    assert set(inputs) == {"raw", "clean"}
    raw_v = opsloop.data.get_version("raw@1")
    clean_v = opsloop.data.get_version("clean@1")
    assert inputs["raw"].digest == raw_v.digest
    assert inputs["clean"].digest == clean_v.digest
    i = inputs["clean"]
    assert i.source_type == "opsloop"
    assert json.loads(i.source)["uri"] == "datasets:/clean@1"
    assert json.loads(i.schema or "")["columns"][0] == {
        "name": "temp",
        "type": "double",
        "nullable": True,
    }
    assert DatasetProfile.from_json(i.profile or "") == clean_v.profile
    assert {"key": "opsloop.dataset.version", "value": "1"} in i.tags
    # data -> run -> model version
    assert mv.run_id == run.run_id
    svc = DatasetService(opsloop.store.default_store())
    assert [v.ref for v in svc.find_by_run(run.run_id)] == ["clean@1"]


def test_parquet_written_by_pandas_with_index(svc: DatasetService, tmp_path: Path) -> None:
    df = frame(50)
    indexed = df.set_index("site")
    path = tmp_path / "indexed.parquet"
    indexed.to_parquet(path)
    dv = svc.register(path, "indexed")
    assert "__index_level_0__" not in dv.columns and "site" not in dv.columns
    assert dv.digest == svc.register(indexed, "indexed").digest
    assert pq.read_metadata(path).num_rows == 50


def test_recorded_schema_is_what_get_returns(svc: DatasetService) -> None:
    """Types Parquet does not keep are recorded as it gives them back."""
    import datetime as dt
    import decimal

    t = pa.table(
        {
            "items": pa.array([[1, 2], None, [3]], pa.list_(pa.int64())),
            "day": pa.array([0, 86_400_000, None], pa.date64()),
            "blob": pa.array([b"x", None, b"y"], pa.large_binary()),
            "price": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("2.25")]),
            "at": pa.array([dt.time(1, 2), None, dt.time(3, 4)], pa.time64("us")),
            "id": pa.array([1, 2, 3], pa.int64()),
        },
        schema=pa.schema(
            [
                ("items", pa.list_(pa.int64())),
                ("day", pa.date64()),
                ("blob", pa.large_binary()),
                ("price", pa.decimal128(5, 2)),
                ("at", pa.time64("us")),
                pa.field("id", pa.int64(), nullable=False),
            ]
        ),
    )
    dv = svc.register(t, "exotic")
    back = svc.read_table(dv).schema
    assert [(f.name, str(f.type), f.nullable) for f in back] == [
        (c.name, c.type, c.nullable) for c in dv.schema
    ]
    assert dv.schema[-1].nullable is False
    assert {c.name: c.kind for c in dv.profile.columns.values()} == {
        "items": "other",
        "day": "datetime",
        "blob": "other",
        "price": "numeric",
        "at": "other",
        "id": "numeric",
    }
    price = dv.profile["price"].numeric
    assert price is not None and price.mean == pytest.approx(1.875)
    assert svc.register(t, "exotic").version == 1
