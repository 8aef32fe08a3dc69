"""The fitted reference: stored and read back, sketched when large, cached per dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as sps

from opsloop.errors import InvalidInput
from opsloop.monitoring import Reference, drift
from opsloop.monitoring.reference import cache_path


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "y": rng.exponential(1.0 + shift, n),
            "k": rng.integers(0, 3, n),
            "site": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "flag": rng.random(n) < 0.3,
        }
    )


def test_round_trip_gives_the_same_report() -> None:
    ref, cur = frame(3000, 0), frame(2000, 1, shift=0.2)
    fitted = Reference.fit(ref)
    back = Reference.from_bytes(fitted.to_bytes())
    assert list(back.columns) == list(fitted.columns)
    for name, c in fitted.columns.items():
        b = back.columns[name]
        assert (b.type, b.kind, b.rows, b.missing, b.labels) == (
            c.type,
            c.kind,
            c.rows,
            c.missing,
            c.labels,
        )
        if c.numeric is not None:
            assert b.numeric is not None
            assert np.array_equal(b.numeric.sorted, c.numeric.sorted)
            gb, gc = b.numeric.wgrid(), c.numeric.wgrid()
            assert gb is not None and gc is not None  # stored, not refitted
            assert np.array_equal(gb.edges, gc.edges) and np.array_equal(gb.sums, gc.sums)
    a = drift(ref, cur).to_dict()
    b = drift(back, cur).to_dict()
    assert a == b
    assert drift(fitted, cur).to_dict() == a


def test_statistics_in_the_report_equal_scipy_on_the_raw_columns() -> None:
    ref, cur = frame(800, 0), frame(700, 1, shift=0.3)
    rep = drift(ref, cur, tests={"x": "ks", "y": "wasserstein", "site": "chisquare"})
    rx, cx = ref["x"].dropna(), cur["x"].dropna()
    ks = sps.ks_2samp(rx, cx)
    assert rep.columns["x"].statistic == pytest.approx(ks.statistic, abs=1e-12)
    assert rep.columns["x"].p_value == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-12)
    w = sps.wasserstein_distance(ref["y"], cur["y"]) / np.std(ref["y"])
    assert rep.columns["y"].statistic == pytest.approx(w, rel=1e-9)
    table = pd.crosstab(
        np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref["site"], cur["site"]]
    ).to_numpy()
    chi = sps.chi2_contingency(table)
    assert rep.columns["site"].statistic == pytest.approx(chi.statistic, rel=1e-9)


def test_wasserstein_against_a_stored_reference_equals_scipy() -> None:
    # The check's exact Wasserstein from the stored cells, without sorting the batch:
    # no drift (the ECDFs cross in many cells) and a shift (they rarely do).
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"v": rng.normal(0, 1, 20_000)})
    stored = Reference.from_bytes(Reference.fit(ref, multivariate=False).to_bytes())
    for shift in (0.0, 0.5):
        cur = pd.DataFrame({"v": rng.normal(shift, 1, 15_000)})
        got = drift(stored, cur, multivariate=False).columns["v"]
        assert got.test == "wasserstein"
        expected = sps.wasserstein_distance(ref["v"], cur["v"]) / np.std(ref["v"])
        assert got.statistic == pytest.approx(expected, rel=1e-9)


def test_default_tests_follow_the_documented_rule() -> None:
    small, large = frame(500, 0), frame(5000, 0)
    s = drift(small, small, multivariate=False).columns
    big = drift(large, large, multivariate=False).columns
    assert [s[c].test for c in ("x", "k", "site", "flag")] == [
        "ks",
        "chisquare",
        "chisquare",
        "chisquare",
    ]
    assert [big[c].test for c in ("x", "k", "site", "flag")] == [
        "wasserstein",
        "jensenshannon",
        "jensenshannon",
        "jensenshannon",
    ]
    over = drift(large, large, tests={"x": "psi", "site": "hellinger"}, multivariate=False).columns
    assert (over["x"].test, over["site"].test) == ("psi", "hellinger")
    allpsi = drift(large, large, tests="ks", multivariate=False).columns
    assert allpsi["site"].test == "jensenshannon" and allpsi["site"].note
    with pytest.raises(InvalidInput):
        drift(large, large, tests="t-test")


def test_signals_added_removed_missing_unseen_range() -> None:
    ref = frame(2000, 0)
    cur = frame(2000, 1).drop(columns=["flag"]).assign(extra=1.0)
    cur.loc[:400, "x"] = np.nan
    cur.loc[:100, "site"] = "zzz"
    cur.loc[:50, "y"] = 1e6
    rep = drift(ref, cur, multivariate=False)
    assert rep.added == ["extra"] and rep.removed == ["flag"]
    assert rep.columns["x"].signals["missing_share_change"] > 0.1
    assert rep.columns["site"].signals["unseen_categories"] == ["zzz"]
    assert rep.columns["site"].signals["unseen_share"] == pytest.approx(101 / 2000)
    # 51 planted values past the reference's max, and a few natural ones.
    assert 51 / 2000 <= rep.columns["y"].signals["out_of_range_share"] < 0.03
    text = " | ".join(rep.alerts)
    for needle in (
        "extra: column added",
        "flag: column removed",
        "x: missing share",
        "site:",
        "y:",
    ):
        assert needle in text


def test_drift_is_found_and_no_drift_is_quiet() -> None:
    ref = frame(5000, 0)
    same = drift(ref, frame(5000, 1))
    assert same.drifted_columns == [] and not same.dataset_drift
    assert not same.multivariate["pca"]["drifted"]
    assert not same.multivariate["classifier"]["drifted"]
    moved = drift(ref, frame(5000, 1, shift=0.5))
    assert {"x", "y"} <= set(moved.drifted_columns)
    assert moved.multivariate["classifier"]["drifted"]


def test_pca_sees_a_correlation_change_no_column_shows() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6000, 1))
    ref = pd.DataFrame(z + 0.1 * rng.normal(size=(6000, 4)), columns=list("abcd"))
    cur = pd.DataFrame(rng.normal(size=(3000, 4)) * ref.std().to_numpy(), columns=list("abcd"))
    rep = drift(ref, cur, multivariate=("pca",))
    assert rep.multivariate["pca"]["drifted"]


def test_learned_thresholds() -> None:
    ref, same, moved = frame(6000, 0), frame(3000, 1), frame(3000, 2, shift=0.3)
    fitted = Reference.fit(ref, learn_thresholds=True)
    assert fitted.columns["x"].learned["wasserstein"]["n"] == 10
    back = Reference.from_bytes(fitted.to_bytes())
    quiet = drift(back, same, threshold="learned", multivariate=False)
    assert quiet.columns["x"].threshold_on == "statistic"
    assert quiet.drifted_columns == []
    loud = drift(ref, moved, threshold="learned", multivariate=False)
    assert {"x", "y"} <= set(loud.drifted_columns)
    # Without learned values the default applies, and the entry says so.
    plain = drift(Reference.fit(ref), same, threshold={"x": "learned"}, multivariate=False)
    assert plain.columns["x"].note and plain.columns["x"].threshold == 0.1


def test_correction_across_columns() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({f"c{i}": rng.normal(size=300) for i in range(40)})
    cur = pd.DataFrame({f"c{i}": rng.normal(size=300) for i in range(40)})
    none = drift(ref, cur, correction="none", multivariate=False)
    bh = drift(ref, cur, multivariate=False)
    bonf = drift(ref, cur, correction="bonferroni", multivariate=False)
    assert len(bh.drifted_columns) <= len(none.drifted_columns)
    assert len(bonf.drifted_columns) <= len(bh.drifted_columns)
    e = bonf.columns["c0"]
    assert e.p_value_adjusted == pytest.approx(min(1.0, (e.p_value or 0) * 40))


def test_large_columns_are_sketched_when_stored() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=50_000)})
    cur = pd.DataFrame({"x": rng.normal(0.05, size=20_000)})
    fitted = Reference.fit(ref, multivariate=False)
    blob = fitted.to_bytes(max_exact=10_000, sketch_size=2_000)
    small = Reference.from_bytes(blob)
    nr = small.columns["x"].numeric
    assert nr is not None and nr.sketched and len(nr.sorted) == 2_000 and nr.n == 50_000
    assert len(blob) < 0.1 * len(fitted.to_bytes())
    exact = drift(fitted, cur, tests="ks", multivariate=False).columns["x"]
    approx = drift(small, cur, tests="ks", multivariate=False).columns["x"]
    assert abs((approx.statistic or 0) - (exact.statistic or 0)) <= 1 / 2_000 + 1e-12
    w_exact = drift(fitted, cur, multivariate=False).columns["x"].statistic or 0
    w_approx = drift(small, cur, multivariate=False).columns["x"].statistic or 0
    assert abs(w_approx - w_exact) < 0.01


def test_from_dataset_caches_the_fit(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import opsloop.data
    from opsloop.data.service import DatasetService
    from opsloop.store import default_store

    ref = frame(3000, 0)
    dv = opsloop.data.register(ref, "sensors")
    first = Reference.from_dataset("sensors@1")
    assert first.source == {"dataset": "sensors@1", "digest": dv.digest}
    files = default_store().artifacts.walk(f"monitoring/references/{dv.digest}")
    assert len(files) == 1 and files[0].path.startswith(cache_path(dv.digest, "")[:-4])

    def boom(self: object, dv: object) -> pa.Table:
        raise AssertionError("the dataset was read again")

    read_table = DatasetService.read_table
    monkeypatch.setattr(DatasetService, "read_table", boom)
    again = Reference.from_dataset("sensors@1")
    assert list(again.columns) == list(first.columns)
    cur = frame(2000, 1, shift=0.4)
    rep = drift("sensors@1", cur)
    assert rep.reference_source["digest"] == dv.digest
    assert "x" in rep.drifted_columns
    monkeypatch.setattr(DatasetService, "read_table", read_table)
    opsloop.data.register(cur, "sensors")
    assert drift("sensors@1", "sensors@2").to_dict() == rep.to_dict()


def test_bad_arguments_are_refused() -> None:
    df = frame(100, 0)
    with pytest.raises(InvalidInput):
        drift([1, 2, 3], df)
    with pytest.raises(InvalidInput):
        drift(df, df, columns=["nope"])
    with pytest.raises(InvalidInput):
        drift(df, df, correction="holm")
    with pytest.raises(InvalidInput):
        Reference.from_bytes(b"not an npz")


def test_first_use_in_a_fresh_process_has_no_import_race() -> None:
    # Columns run on threads: scipy imported for the first time from two of them at
    # once used to fail one column with Python's _DeadlockError.
    code = (
        "import numpy as np, pandas as pd\n"
        "from opsloop.monitoring import drift\n"
        "rng = np.random.default_rng(0)\n"
        "df = pd.DataFrame({'x': rng.normal(size=300), 'c': rng.choice(['a', 'b'], 300),\n"
        "                   'y': rng.normal(size=300), 'd': rng.choice(['u', 'v'], 300)})\n"
        "rep = drift(df, df)\n"
        "errors = [e.error for e in rep.columns.values() if e.error]\n"
        "assert not errors, errors\n"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", code], check=True)


def test_import_is_light() -> None:
    code = (
        "import sys, opsloop.monitoring as m; "
        "assert 'sklearn' not in sys.modules and 'scipy' not in sys.modules, 'heavy import'; "
        "m.drift; assert 'sklearn' not in sys.modules; "
        "import opsloop.monitoring.checks, opsloop.monitoring.reference; "
        "assert callable(m.drift) and m.drift.__name__ == 'drift', m.drift"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_string_columns_counted_against_the_reference_labels_match_the_generic_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A check counts a string column against the reference's labels (Arrow's
    # index_in); the report is the one the generic count (value_counts) gives.
    from opsloop.monitoring.reference import ColumnRef

    rng = np.random.default_rng(5)
    ref = frame(3000, 0)
    vals = rng.choice(["a", "b", "c", "zz", "yy", None], 2000, p=[0.3, 0.3, 0.2, 0.05, 0.05, 0.1])
    currents = [
        frame(2000, 1).assign(site=pd.Series(vals, dtype=dtype))
        for dtype in ("str", "string[pyarrow]", pd.ArrowDtype(pa.large_string()), object)
    ]
    currents.append(pa.Table.from_pandas(currents[0], preserve_index=False))
    fitted = Reference.fit(ref, multivariate=False)
    fast = [drift(fitted, cur, multivariate=False).to_dict() for cur in currents]
    monkeypatch.setattr(ColumnRef, "known_labels", lambda self: None)
    slow = [drift(fitted, cur, multivariate=False).to_dict() for cur in currents]
    assert fast == slow
    site = fast[0]["columns"][3]
    assert site["column"] == "site" and site["signals"]["unseen_categories"] == ["zz", "yy"]


def test_a_reference_stored_before_the_classifier_bins_still_checks() -> None:
    # References stored before the bin edges and the PCA residual basis were kept
    # make them when loaded: the same report.
    import io

    ref, cur = frame(3000, 0), frame(2000, 1, shift=0.2)
    blob = Reference.fit(ref).to_bytes()
    z = np.load(io.BytesIO(blob), allow_pickle=False)
    arrays = {k: z[k] for k in z.files if k not in ("mv_edges", "mv_n_edges", "mv_residual")}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    old = Reference.from_bytes(buf.getvalue())
    new = Reference.from_bytes(blob)
    a, b = drift(old, cur).to_dict(), drift(new, cur).to_dict()
    assert a["multivariate"]["classifier"] == b["multivariate"]["classifier"]
    assert a["multivariate"]["pca"]["statistic"] == pytest.approx(
        b["multivariate"]["pca"]["statistic"], rel=1e-9
    )
    assert a["columns"] == b["columns"]
