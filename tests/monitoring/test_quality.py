"""Data quality on prediction-log windows: the reference's checks (less custom ones,
row counts and checks of columns the log lacks), or given ones; a check that cannot
run fails with its reason, the others run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from opsloop.data import validation as v
from opsloop.data.service import DatasetService
from opsloop.errors import InvalidInput
from opsloop.monitoring.quality import checks_of, reference_checks, specs_of, window_quality
from opsloop.store import Store


def test_reference_checks_run_on_a_window(store: Store) -> None:
    ref = pd.DataFrame({"temp": [20.0, 21.0, 22.0], "site": ["a", "b", "a"], "label": [0, 1, 0]})
    svc = DatasetService(store)
    dv = svc.register(ref, "sensors")
    checks = [
        v.in_range("temp", min=-40, max=60),
        v.accepted_values("site", ["a", "b"]),
        v.not_null("label"),
        v.row_count(min=3),
        v.custom("warm", lambda df: df["temp"] > 0),
    ]
    dv = svc.set_validation_report(dv.ref, v.validate(ref, checks).to_dict())
    found, notes = reference_checks(dv, ["request_id", "timestamp", "temp", "site", "prediction"])
    assert [c.kind for c in found] == ["in_range", "accepted_values"]
    assert len(notes) == 3 and any("custom" in n for n in notes)
    window = pd.DataFrame({"temp": [25.0, np.nan, 99.0], "site": ["a", "c", None]})
    report = window_quality(window, found)
    assert [r.passed for r in report.results] == [False, False]
    assert report.results[0].failing_rows == 1  # 99 (a pandas NaN is missing: not_null's job)
    # given checks: dicts or Check objects; about a missing column: a failed result
    given = checks_of([{"check": "not_null", "column": "temp"}, v.unique("nope")])
    report = window_quality(window, given)
    assert report.results[1].error is not None and not report.results[1].passed
    assert specs_of(given)[0] == {"check": "not_null", "column": "temp"}
    with pytest.raises(InvalidInput, match="custom"):
        specs_of([v.custom("warm", lambda df: df["temp"] > 0)])
    with pytest.raises(InvalidInput):
        checks_of([{"check": "teleport"}])
    # a version without a report carries no checks
    assert reference_checks(svc.register(ref.head(2), "bare")) == ([], [])
