"""The ``opsloop`` command as a user runs it: a real process on a store of the test's own."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def cli_env(home: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with ``OPSLOOP_HOME`` at ``home`` and without
    ``OPSLOOP_DATABASE_URL`` and ``OPSLOOP_ARTIFACTS`` (so the store is home's own),
    then ``env``'s variables on top (which may set those two again)."""
    out = {**os.environ, "OPSLOOP_HOME": str(home)}
    out.pop("OPSLOOP_DATABASE_URL", None)
    out.pop("OPSLOOP_ARTIFACTS", None)
    out.update(env or {})
    return out


def opsloop(
    *args: str,
    home: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``opsloop *args`` in a new process (``python -m opsloop.cli.main``) with
    :func:`cli_env`'s environment, its output captured as text. With ``check`` a non-zero
    exit fails the test, its output in the message; without, the caller reads
    ``returncode``."""
    done = subprocess.run(
        [sys.executable, "-m", "opsloop.cli.main", *args],
        input=input,
        cwd=cwd,
        env=cli_env(home, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, (
            f"opsloop {shlex.join(args)} exited with {done.returncode}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    return done
