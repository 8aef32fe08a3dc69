"""How outputs and code become bytes."""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from opsloop.pipelines.values import (
    PARQUET_ARROW,
    PARQUET_PANDAS,
    PICKLE,
    dump_value,
    dumps_code,
    load_value,
)


def test_frames_go_to_parquet_deterministically() -> None:
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]}, index=[10, 20, 30])
    data, fmt = dump_value(df)
    assert fmt == PARQUET_PANDAS and data[:4] == b"PAR1"
    assert dump_value(df.copy())[0] == data
    pd.testing.assert_frame_equal(load_value(data, fmt), df)


def test_frames_parquet_cannot_hold_are_pickled() -> None:
    df = pd.DataFrame({0: [1, 2], "b": [{"k": 1}, [1]]})
    data, fmt = dump_value(df)
    assert fmt == PICKLE
    pd.testing.assert_frame_equal(load_value(data, fmt), df)


def test_arrow_tables_and_other_values() -> None:
    table = pa.table({"a": [1, 2]})
    data, fmt = dump_value(table)
    assert fmt == PARQUET_ARROW and load_value(data, fmt).equals(table)
    value = {"model": [1.5, 2.5], "t": (1, "a")}
    assert load_value(*dump_value(value)) == value
    with pytest.raises(ValueError, match="unknown stored value format"):
        load_value(b"", "nope")


def test_project_code_travels_by_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"byval_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "FACTOR = 3\n\ndef helper(x):\n    return x * FACTOR\n\ndef f(x):\n    return helper(x) + 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    script = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(2))"

    def load_elsewhere(data: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-c", script], input=data, capture_output=True)

    # A process that cannot import the module still runs the function, helper and all.
    by_value = load_elsewhere(dumps_code(module.f, [name]))
    assert by_value.returncode == 0 and by_value.stdout.strip() == b"7"
    # By reference (cloudpickle's default for an importable module) it could not.
    by_reference = load_elsewhere(dumps_code(module.f))
    assert by_reference.returncode != 0 and b"ModuleNotFoundError" in by_reference.stderr
