"""The code and params fingerprints that cache keys are made of."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opsloop.pipelines.fingerprint import CodeHasher, Unhashable, canonical, is_user_module
from opsloop.pipelines.values import dump_value

BASE = """
import json
import numpy as np
from opsloop.pipelines import step

THRESHOLD = 0.5
NAMES = ("a", "b")

def helper(x):
    return x + 1

class Scaler:
    factor = 2

    def apply(self, x):
        return x * self.factor

@step(retries=1)
def compute(x):
    '''Compute things.'''
    if x in {"a", "b", "c"}:
        return 0
    return Scaler().apply(helper(x)) + THRESHOLD + np.mean([1, 2])  # the answer
"""


def load(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A project module written from ``source`` (a fresh name, so no import cache)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"fp_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    return importlib.import_module(name)


def code_hash(module: types.ModuleType) -> str:
    return CodeHasher().hash(module.compute)


def test_what_does_not_change_the_code_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = code_hash(load(tmp_path, BASE, monkeypatch))
    variants = [
        BASE.replace("# the answer", "# another comment"),
        BASE.replace("'''Compute things.'''", "'''Other words.'''"),
        BASE.replace("@step(retries=1)", "@step(retries=5, timeout=3)"),
        BASE.replace("import json\n", "import json\n\n\n# moved down\n"),
        BASE.replace("return x + 1", "return x + 1  # same"),
    ]
    for source in variants:
        assert code_hash(load(tmp_path, source, monkeypatch)) == base, source


def test_what_changes_the_code_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = code_hash(load(tmp_path, BASE, monkeypatch))
    variants = [
        BASE.replace("+ THRESHOLD", "- THRESHOLD"),  # the step's own body
        BASE.replace("return x + 1", "return x + 2"),  # a helper it calls
        BASE.replace("THRESHOLD = 0.5", "THRESHOLD = 0.6"),  # a constant it reads
        BASE.replace("factor = 2", "factor = 3"),  # a class attribute it uses
        BASE.replace("return x * self.factor", "return x * self.factor * 1"),  # a method
        BASE.replace('{"a", "b", "c"}', '{"a", "b", "d"}'),
    ]
    for source in variants:
        assert code_hash(load(tmp_path, source, monkeypatch)) != base, source


def test_helpers_in_other_project_modules_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpers = load(tmp_path, "def clean(x):\n    return x.strip()\n", monkeypatch)
    source = f"""
        import {helpers.__name__} as h
        from {helpers.__name__} import clean

        def compute(x):
            return h.clean(x) + clean(x)
        """
    module = load(tmp_path, source, monkeypatch)
    hasher = CodeHasher()
    before = hasher.hash(module.compute)
    assert helpers.__name__ in hasher.modules(module.compute)
    assert "numpy" not in hasher.modules(module.compute)
    (tmp_path / f"{helpers.__name__}.py").write_text("def clean(x):\n    return x.upper()\n")
    importlib.reload(helpers)
    importlib.reload(module)
    assert CodeHasher().hash(module.compute) != before


def test_closures_and_defaults_count() -> None:
    def make(n: int):  # type: ignore[no-untyped-def]
        def f(x: int, k: int = 1) -> int:
            return x + n + k

        return f

    assert CodeHasher().hash(make(1)) == CodeHasher().hash(make(1))
    assert CodeHasher().hash(make(1)) != CodeHasher().hash(make(2))


def test_the_code_hash_is_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "fp_stable.py").write_text(textwrap.dedent(BASE))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fp_stable;"
        "from opsloop.pipelines.fingerprint import CodeHasher;"
        "print(CodeHasher().hash(fp_stable.compute))"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(hashes) == 1


def test_whose_code_counts() -> None:
    assert is_user_module(__name__)
    assert is_user_module("__main__")
    assert not is_user_module("json")
    assert not is_user_module("numpy")
    assert not is_user_module("opsloop.pipelines.runner")
    assert not is_user_module("sys")


def test_canonical_params_tell_types_apart_but_not_orders() -> None:
    def enc(v: object) -> str:
        return json.dumps(canonical(v, dump=lambda x: dump_value(x)[0]), sort_keys=True)

    assert len({enc(1), enc(1.0), enc(True), enc("1"), enc(None)}) == 5
    assert enc([1, 2]) != enc((1, 2))
    assert enc({"a": 1, "b": 2}) == enc({"b": 2, "a": 1})
    assert enc({3, 1, 2}) == enc({2, 3, 1})
    assert enc(np.float32(0.5)) != enc(0.5)
    assert enc(float("nan")) == enc(float("nan"))
    frame = pd.DataFrame({"a": [1, 2]})
    assert enc(frame) == enc(frame.copy())
    assert enc(frame) != enc(frame.assign(a=[1, 3]))
    with pytest.raises(Unhashable):
        canonical(object())
