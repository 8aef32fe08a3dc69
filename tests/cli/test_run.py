"""``opsloop run module:pipeline`` from the shell."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.cli_process import opsloop

FLOWS = textwrap.dedent(
    """
    from pathlib import Path

    import opsloop

    @opsloop.step
    def load(n: int):
        return list(range(n))

    @opsloop.step
    def square(xs):
        return [x * x for x in xs]

    @opsloop.step
    def total(xs, ys):
        return sum(xs) + sum(ys)

    @opsloop.step
    def boom(xs):
        raise ValueError("bad batch")

    @opsloop.pipeline
    def good(n: int = 10):
        xs = load(n)
        return total(xs, square(xs))

    @opsloop.step
    def size(path):
        return len(path.read_bytes())

    @opsloop.pipeline
    def measure(path: Path):
        return size(path)

    @opsloop.pipeline
    def bad(n: int = 3):
        return total(boom(load(n)), load(n))
    """
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return opsloop(
        "run", *args, home=tmp_path / "home", env={"COLUMNS": "160"}, cwd=tmp_path, check=False
    )


def test_run_twice_hits_the_cache(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    first = _run(tmp_path, "flows:good", "-p", "n=5", "--executor", "inline")
    assert first.returncode == 0, first.stderr
    assert "3 steps, 0 from the cache" in first.stdout
    second = _run(tmp_path, "flows:good", "-p", "n=5", "--executor", "inline")
    assert "3 steps, 3 from the cache" in second.stdout
    fresh = _run(tmp_path, "flows:good", "-p", "n=5", "--executor", "inline", "--no-cache")
    assert "3 steps, 0 from the cache" in fresh.stdout
    other = _run(tmp_path, "flows.py:good", "-p", "n=6", "--executor", "inline")
    assert other.returncode == 0 and "3 steps, 0 from the cache" in other.stdout


def test_a_path_parameter_counts_by_content(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    data = tmp_path / "data.txt"
    data.write_text("abc")
    assert (
        "0 from the cache"
        in _run(tmp_path, "flows:measure", "-p", f"path={data}", "--executor", "inline").stdout
    )
    assert (
        "1 from the cache"
        in _run(tmp_path, "flows:measure", "-p", f"path={data}", "--executor", "inline").stdout
    )
    data.write_text("abcd")
    assert (
        "0 from the cache"
        in _run(tmp_path, "flows:measure", "-p", f"path={data}", "--executor", "inline").stdout
    )


def test_failures_and_bad_targets(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    failed = _run(tmp_path, "flows:bad", "--executor", "inline")
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "bad batch" in failed.stdout
    assert _run(tmp_path, "flows:nope").returncode == 2
    assert _run(tmp_path, "no_such_module:x").returncode == 2
    assert _run(tmp_path, "flows:good", "-p", "oops").returncode == 2
