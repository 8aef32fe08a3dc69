"""Streaming anomaly detection: one point at a time, constant time and memory.

A ``Detector`` takes (timestamp, value) points in arrival order and gives each an anomaly
score in [0, 1], using only the points before it (no look-ahead). The default ensemble
needs no tuning per series. Each point is compared with:

- a slow mean (drifts, level shifts) and a fast local level (spikes);
- a medium mean against the slow one (a sustained shift too small for one point);
- a time-of-day and an hour-of-week profile, used only where they explain the series
  clearly better than the slow mean (daily and weekly seasonality);
- the recent size of steps against the long-run size (changes in noise);
- the envelope of every value seen (its edges drift back very slowly): values in a row
  beyond it are a level the series has not been at for long, each as surprising as such
  values are rare in this series (in a steady trend they are common, and count little);

each as a z-score against its own running scale. Where a seasonal profile is usable,
a value far from it is a surprise in its own right (a daily peak that does not come, a
quiet holiday), even when it is ordinary for the series as a whole. A surprise no larger
than 1.5 times the largest seen on earlier days within half an hour of this time of day
is explained (a nightly job's spike is routine; that memory fades by a fifth a day).
The largest surprise that a usable seasonal profile does not explain is cut down when the shape of the last 8 points
matches a remembered one almost exactly (64 shapes are kept, least recently used go
first: a machine-made pattern that recurs, such as a nightly job's exact spike, stops
alerting; a noisy repeat still counts); it is divided by the series' own running 99th percentile of surprise (a
series that always jumps must jump further than usual) and squashed into [0, 1). The
first 250 points only learn (score 0); after a score of 0.5 or more the next 200 points
are quiet (NAB, like an on-call engineer, rewards the first alert of an incident and
charges every further one) — unless a surprise 2.5 times the one that began the quiet
period arrives (a blip, then an outage: the outage alerts too; ``escalate=0`` turns
this off).

Defined behaviour for awkward input, never an exception: a NaN or infinite value scores
0 and leaves the state alone; a timestamp that steps back or repeats is scored but does
not move the clock; missing timestamps (NaN/None) are scored without seasonality; a gap
of days is just a gap; a constant series scores 0 until it changes.

>>> import numpy as np
>>> det = default_detector()
>>> t = np.arange(1000) * 60.0
>>> x = np.sin(t / 3600.0); x[800] += 10.0
>>> scores = det.score_series(t, x)
>>> int(np.argmax(scores)), float(scores.max()) > 0.5
(800, True)

The state pickles (persist it across restarts) and the batch path gives the same scores
as ``update`` one point at a time.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from opsloop.aiops.detect import _kernel

__all__ = ["PARAMS", "Detector", "default_detector", "parse_timestamps", "to_seconds"]

# The default settings, by name (see ``_kernel`` for what each does).
PARAMS: dict[str, float] = {
    name[2:].lower(): float(_kernel.default_params()[getattr(_kernel, name)])
    for name in dir(_kernel)
    if name.startswith("P_")
}


def to_seconds(ts: Any) -> npt.NDArray[np.float64]:
    """Timestamps as float seconds since the epoch; NaN where there is none.

    Accepts numbers (already seconds), ``datetime64``, ``datetime`` and pandas values,
    or strings pandas can parse.

    >>> to_seconds(np.array(["1970-01-01T00:01:00"], dtype="datetime64[s]"))
    array([60.])
    """
    arr = np.asarray(ts)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    if arr.dtype.kind == "b":
        return arr.astype(np.float64)
    if arr.dtype.kind == "M":
        ns = arr.astype("datetime64[ns]")
        out = ns.astype(np.int64).astype(np.float64) / 1e9
        out[np.isnat(ns)] = np.nan
        return out
    import pandas as pd  # type: ignore[import-untyped]

    conv = pd.to_datetime(pd.Series(arr.ravel()), errors="coerce", utc=True)
    return _epoch_seconds(conv).reshape(arr.shape)


def _epoch_seconds(parsed: Any) -> npt.NDArray[np.float64]:
    """Seconds since the epoch of a pandas Series of UTC datetimes (NaT: NaN)."""
    import pandas as pd

    # pandas may hold micro- or nanoseconds: subtract the epoch rather than reading int64
    secs = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.array(secs.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def parse_timestamps(cells: Any, column: str) -> npt.NDArray[np.float64]:
    """Seconds since the epoch for each text cell of a column (a pandas Series of
    ``str``, as a CSV is read); an empty cell is a missing timestamp (NaN).

    Numbers are taken as seconds; anything else must be a date and time pandas reads.
    A cell that is neither is an ``InvalidInput`` naming its row (the header is row 1).

    >>> import pandas as pd
    >>> parse_timestamps(pd.Series(["1970-01-01 00:01", ""]), "ts")
    array([60., nan])
    """
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
    out = _epoch_seconds(parsed)
    out[empty] = np.nan
    return out


def _one_second(ts: Any) -> float:
    if isinstance(ts, float | int) and not isinstance(ts, bool):
        return float(ts)
    if ts is None:
        return math.nan
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=_dt.UTC)
        return float(ts.timestamp())
    try:
        return float(to_seconds(np.asarray([ts]))[0].item())
    except (TypeError, ValueError):
        return math.nan


class Detector:
    """A streaming anomaly detector (the default ensemble, optionally re-tuned).

    ``Detector(quiet=100)`` overrides a setting from ``PARAMS``.

    >>> det = Detector()
    >>> [round(det.update(i * 60.0, 1.0), 3) for i in range(3)]
    [0.0, 0.0, 0.0]
    """

    def __init__(self, **settings: float) -> None:
        params = _kernel.default_params()
        for name, value in settings.items():
            if name not in PARAMS:
                from opsloop.errors import InvalidInput

                raise InvalidInput(
                    f"unknown detector setting {name!r}; use one of {', '.join(sorted(PARAMS))}"
                )
            params[getattr(_kernel, "P_" + name.upper())] = float(value)
        self._params = params
        self._state = np.zeros(_kernel.STATE_SIZE)

    def update(self, ts: Any, value: float) -> float:
        """Feed one point (timestamp in seconds or a datetime); return its score."""
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = math.nan
        return float(_kernel.step(self._state, self._params, _one_second(ts), x))

    def score_series(self, ts: Any, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Scores of many points in order: the same as ``update`` on each, faster.

        The detector keeps learning: a second call continues where the first stopped.
        """
        xs = np.asarray(values, dtype=np.float64).ravel()
        t = to_seconds(ts).ravel()
        if len(t) != len(xs):
            from opsloop.errors import InvalidInput

            raise InvalidInput(f"{len(t)} timestamps for {len(xs)} values; give one per value")
        out = np.empty(len(xs))
        _kernel.run(
            self._state, self._params, np.ascontiguousarray(t), np.ascontiguousarray(xs), out
        )
        return out

    @property
    def points(self) -> int:
        """Points with a finite value seen so far."""
        return int(self._state[_kernel.N])

    def reset(self) -> None:
        """Forget everything learned (the settings stay)."""
        self._state[:] = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self._params.copy(), "state": self._state.copy(), "version": 1}

    def __setstate__(self, d: dict[str, Any]) -> None:
        # The compiled step does not check bounds: a state or parameter vector saved by a
        # version with another layout must never reach it. Such a detector starts afresh
        # (it relearns in a few hundred points) rather than reading past its arrays.
        params = np.array(d.get("params", ()), dtype=np.float64).ravel()
        state = np.array(d.get("state", ()), dtype=np.float64).ravel()
        if len(params) != _kernel.N_PARAMS:
            params = _kernel.default_params()
        if len(state) != _kernel.STATE_SIZE:
            state = np.zeros(_kernel.STATE_SIZE)
        self._params = params
        self._state = state


def default_detector() -> Detector:
    """The default ensemble, no tuning needed.

    >>> default_detector().update(0.0, 1.0)
    0.0
    """
    return Detector()
