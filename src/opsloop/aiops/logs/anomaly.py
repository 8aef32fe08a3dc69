"""The log anomaly detectors' arithmetic, apart from the store.

* **New template** (``warmed_up``): a template the miner had never seen, once a source
  has a history (so the first minutes of a new source do not alert on every line).
* **Rate change** (``rate_change``): a known template's count in one window against its
  own counts in the windows before: a negative binomial when the history is
  over-dispersed (a Poisson otherwise), with a minimum count and a minimum ratio, so
  a tail probability alone (a high-rate template's small wobble) does not alert.
* **Unusual sequence** (``TransitionModel``): a Markov chain over each session's
  templates, learned online: a transition from a template seen often to one that
  rarely or never followed it (DeepLog's idea — the next event should be one of the
  likely ones — with counts instead of an LSTM).

>>> m = TransitionModel()
>>> for _ in range(100):
...     m.learn(1, 2)
>>> m.probability(1, 2), m.probability(1, 3)
(1.0, 0.0)
>>> rate_change(40, [3, 5, 4, 6, 2, 4, 5, 3, 4, 4], min_count=10).direction
'up'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from math import isfinite

from scipy.special import betainc, gammainc, gammaincc  # type: ignore[import-untyped]


@dataclass(frozen=True, slots=True)
class RateChange:
    """A count judged against its history: ``direction`` is ``"up"``, ``"down"`` or
    ``None`` (normal); ``p_value`` the tail probability of a count at least that far out."""

    direction: str | None
    count: int
    expected: float
    p_value: float


def tail_probabilities(count: int, mean: float, var: float) -> tuple[float, float]:
    """``(P(X >= count), P(X <= count))`` for a count with this mean and variance: a
    negative binomial when ``var > mean``, a Poisson otherwise.

    >>> up, down = tail_probabilities(10, 2.0, 2.0)
    >>> round(up, 6), round(down, 6)
    (4.6e-05, 0.999992)
    """
    mean = max(mean, 1e-9)
    if var > mean * 1.0001:
        # NB(r, p): mean r(1-p)/p, variance r(1-p)/p^2.
        p = mean / var
        r = mean * p / (1.0 - p)
        up = 1.0 if count <= 0 else float(betainc(count, r, 1.0 - p))
        down = float(betainc(r, count + 1, p))
    else:
        up = 1.0 if count <= 0 else float(gammainc(count, mean))
        down = float(gammaincc(count + 1, mean))
    return (up if isfinite(up) else 1.0), (down if isfinite(down) else 1.0)


def rate_change(
    count: int,
    history: Sequence[int],
    *,
    min_count: int = 10,
    min_ratio: float = 2.0,
    alpha: float = 1e-4,
) -> RateChange:
    """Judge one window's count of a template against its counts in earlier windows.

    Up: at least ``min_count`` lines, ``min_ratio`` times the mean, and a tail
    probability below ``alpha``. Down: a mean of at least ``min_count``, at most
    ``1/min_ratio`` of it, and a tail probability below ``alpha``. A template absent
    from the history has mean ``0.5 / len(history)``: a known but quiet template that
    bursts is a rate change.
    """
    n = len(history)
    if n == 0:
        return RateChange(None, count, 0.0, 1.0)
    total = float(sum(history))
    mean = (total if total > 0 else 0.5) / n
    var = sum((h - mean) ** 2 for h in history) / max(n - 1, 1)
    up, down = tail_probabilities(count, mean, var)
    if count >= min_count and count >= min_ratio * mean and up < alpha:
        return RateChange("up", count, mean, up)
    if mean >= min_count and count * min_ratio <= mean and down < alpha:
        return RateChange("down", count, mean, down)
    return RateChange(None, count, mean, min(up, down))


def warmed_up(
    first_time: int | None, last_time: int | None, lines: int, *, warmup_ms: int, warmup_lines: int
) -> bool:
    """Whether a source has history enough for a new template to mean something: at
    least ``warmup_lines`` lines over at least ``warmup_ms`` of log time."""
    if first_time is None or last_time is None:
        return False
    return lines >= warmup_lines and last_time - first_time >= warmup_ms


class TransitionModel:
    """Counts of template-to-template transitions within sessions (0: a session's start).

    ``probability(prev, next)`` is the share of ``prev``'s transitions that went to
    ``next``; ``unusual`` says whether a transition is rare enough, from a template seen
    often enough, to report.
    """

    __slots__ = ("counts", "totals")

    def __init__(self, counts: Mapping[tuple[int, int], int] | None = None) -> None:
        self.counts: dict[tuple[int, int], int] = {}
        self.totals: dict[int, int] = {}
        for (a, b), n in (counts or {}).items():
            self.add(a, b, n)

    def add(self, prev: int, nxt: int, n: int) -> None:
        key = (prev, nxt)
        self.counts[key] = self.counts.get(key, 0) + n
        self.totals[prev] = self.totals.get(prev, 0) + n

    def learn(self, prev: int, nxt: int) -> None:
        """Count one transition."""
        self.add(prev, nxt, 1)

    def probability(self, prev: int, nxt: int) -> float | None:
        """How often ``prev`` went to ``nxt`` so far (``None``: ``prev`` never seen)."""
        total = self.totals.get(prev, 0)
        if total == 0:
            return None
        return self.counts.get((prev, nxt), 0) / total

    def unusual(self, prev: int, nxt: int, *, min_support: int, rare: float) -> float | None:
        """The transition's probability if it is unusual (``prev`` seen at least
        ``min_support`` times, and ``nxt`` after it in under ``rare`` of them), else None."""
        total = self.totals.get(prev, 0)
        if total < min_support:
            return None
        p = self.counts.get((prev, nxt), 0) / total
        return p if p < rare else None

    def remap(self, resolve: Mapping[int, int]) -> None:
        """Move the counts of merged templates to the templates they went into."""
        if not resolve:
            return
        old = self.counts
        self.counts, self.totals = {}, {}
        for (a, b), n in old.items():
            self.add(resolve.get(a, a), resolve.get(b, b), n)

    def items(self) -> Iterable[tuple[tuple[int, int], int]]:
        return self.counts.items()
