"""``opsloop detect FILE.csv`` (``-``: standard input): score a series' history with the
streaming detector.

A face over ``opsloop.aiops.detect``: it reads the CSV, parses its timestamps
(``parse_timestamps``), feeds the points in file order to the default detector, and
writes the same rows, in the same order and with the same text, plus an
``anomaly_score`` column. Errors reach ``main()``, which prints them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    from opsloop.errors import InvalidInput, NotFound

    stdin = str(path) == "-"
    name = "standard input" if stdin else str(path)
    if not stdin and not path.is_file():
        raise NotFound(f"{path} does not exist or is not a file: give a CSV file (or - for stdin)")
    try:
        # every cell as text, so the rows are written back exactly as they came
        return pd.read_csv(
            sys.stdin if stdin else path, dtype=str, keep_default_na=False, na_filter=False
        )
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{name} is empty: give a CSV with a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{name} is not a readable CSV: {exc}") from None


def detect(
    file: Annotated[
        Path, typer.Argument(help="CSV file with a timestamp and a value column; - for stdin.")
    ],
    timestamp: Annotated[str, typer.Option(help="Timestamp column.")] = "timestamp",
    value: Annotated[str, typer.Option(help="Value column.")] = "value",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default: standard output).")
    ] = None,
) -> None:
    """Score every row of a series for anomalies (streaming, no look-ahead).

    Writes the input with an anomaly_score column in [0, 1]: same rows, same order.
    Non-numeric values score 0 and are skipped by the detector.
    """
    import numpy as np
    import pandas as pd

    from opsloop.aiops.detect import default_detector, parse_timestamps
    from opsloop.errors import InvalidInput

    frame = _read(file)
    for col, what in ((timestamp, "--timestamp"), (value, "--value")):
        if col not in frame.columns:
            raise InvalidInput(
                f"{file} has no column {col!r} (its columns: {', '.join(map(str, frame.columns))});"
                f" name the right one with {what}"
            )
    if "anomaly_score" in frame.columns:
        raise InvalidInput(f"{file} already has an anomaly_score column; rename or drop it first")
    ts = parse_timestamps(frame[timestamp], timestamp)
    xs = pd.to_numeric(frame[value].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    scores = default_detector().score_series(ts, xs)
    frame["anomaly_score"] = np.round(scores, 6)
    if output is None:
        frame.to_csv(sys.stdout, index=False, lineterminator="\n")
    else:
        tmp = output.with_name(output.name + ".tmp")
        frame.to_csv(tmp, index=False, lineterminator="\n")
        tmp.replace(output)
