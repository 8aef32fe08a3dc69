"""``opsloop detect FILE.csv`` (or ``-`` for standard input): score a series' history with the streaming detector.

A face over ``opsloop.aiops.detect``: it reads the CSV, feeds the points in file order to
the default detector, and writes the same rows, in the same order and with the same
text, plus an ``anomaly_score`` column. Errors reach ``main()``, which prints them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd  # type: ignore[import-untyped]


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd

    from opsloop.errors import InvalidInput, NotFound

    stdin = str(path) == "-"
    if not stdin and not path.is_file():
        raise NotFound(f"{path} does not exist or is not a file: give a CSV file (or - for stdin)")
    try:
        # every cell as text, so the rows are written back exactly as they came
        return pd.read_csv(
            sys.stdin if stdin else path, dtype=str, keep_default_na=False, na_filter=False
        )
    except pd.errors.EmptyDataError:
        name = "standard input" if stdin else str(path)
        raise InvalidInput(f"{name} is empty: give a CSV with a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        name = "standard input" if stdin else str(path)
        raise InvalidInput(f"{name} is not a readable CSV: {exc}") from None


def parse_timestamps(cells: pd.Series, column: str) -> npt.NDArray[np.float64]:
    """Seconds since the epoch for each cell; an empty cell is a missing timestamp.

    Numbers are taken as seconds; anything else must be a date and time pandas reads.
    A cell that is neither is an error naming its row (the header is row 1)."""
    import numpy as np
    import pandas as pd

    from opsloop.errors import InvalidInput

    text = cells.str.strip()
    empty = (text == "").to_numpy()
    numeric = pd.to_numeric(text.where(~empty), errors="coerce")
    if bool(numeric.notna().to_numpy()[~empty].all()):
        return np.asarray(numeric.to_numpy(dtype=np.float64), dtype=np.float64)
    try:
        parsed = pd.to_datetime(text.where(~empty), errors="coerce", utc=True)
    except (ValueError, TypeError):
        parsed = pd.Series(pd.NaT, index=text.index)
    bad = parsed.isna().to_numpy() & ~empty
    if bad.any():
        # the inferred format may not fit every row: try each row on its own
        parsed = pd.to_datetime(text.where(~empty), errors="coerce", utc=True, format="mixed")
        bad = parsed.isna().to_numpy() & ~empty
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInput(
            f"column {column!r}, row {i + 2}: {cells.iloc[i]!r} is not a timestamp; give "
            "dates and times (e.g. 2024-05-01 12:00:00) or seconds since the epoch"
        )
    # pandas may hold micro- or nanoseconds: subtract the epoch rather than reading int64
    epoch = pd.Timestamp(0, tz="UTC")
    secs = (parsed - epoch) / pd.Timedelta(seconds=1)
    out = np.array(secs.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    out[empty] = np.nan
    return np.asarray(out, dtype=np.float64)


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

    from opsloop.aiops.detect import default_detector
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
