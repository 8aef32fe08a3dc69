"""Multivariate drift: PCA reconstruction error and a domain classifier.

Both work on a row sample encoded as numbers: a numeric column as its z-score against
the reference (missing as 0, clipped to [-10, 10] so +-inf stay finite), a categorical
one as the reference share of its category (missing or unseen: 0).

- **PCA reconstruction error.** Fitted on one half of the reference sample with the
  fewest components that explain 90% of its variance (features standardised by their
  spread in the sample, clipped to [-10, 10]) (at most one fewer than the
  features); the other half gives the reference's error distribution. A check
  compares the current sample's errors with it: the ratio of mean errors, and a KS
  test of the two error samples. Drift when the ratio exceeds
  ``1 + max(0.05, 3 * cv * sqrt(1/n_ref + 1/n_cur))`` (``cv`` the coefficient of
  variation of the reference errors: three standard errors of the ratio, at least 5%).
  It sees changes in the correlation between columns that no single column shows.
- **Domain classifier.** Up to 1,000 rows of each side, labelled by side;
  gradient-boosted trees (20 rounds of at most 8 leaves, 20 rows a leaf, learning
  rate 0.15: scikit-learn's ``HistGradientBoostingClassifier``'s algorithm, compiled
  in ``_kernels.boost``) scored by 2-fold cross-validated ROC AUC. The features are
  binned by edges the fit takes from the reference sample (``bin_edges``: up to 60
  quantile bins, or one a distinct value, and a bin below and one above the sample's
  range), and the reference sample is binned then too: a check bins only its current
  rows (scikit-learn's classifier found its own bins on every fit, a quarter of its
  time). Measured on the same rows and folds (16 mixed columns; 300 checks each at
  60, 150 and 500 rows a side, 100 at 1,000): scikit-learn's classifier with 30
  rounds of 15 leaves, these trees with the same settings, and these trees as used
  spread alike without drift (1.1 to 1.3 times ``sd`` below; the largest of 1,000
  null AUCs 3.7 to 3.9 ``sd`` from 0.5) and have the same power (100 checks each: a column
  shifted by 0.3 sd in 1,000 rows 0.19 of the time at 30 x 15, 0.26 at 20 x 8; a
  new correlation between four columns in 300 rows 0.37 and 0.35, in 1,000 rows
  always), at a third of the cost of the 30 x 15 trees. The folds keep identical
  rows together (``group_folds``: stratified group folds, a group per distinct
  encoded row, either side): a batch that repeats rows (the same requests served again) would otherwise
  put a row in the training fold and its copy in the scored one, and the classifier
  would "recognise" the current side by memory (measured on the demo's 200 requests
  from 143 test rows: AUC 0.67 without drift). With no drift the AUC is 0.5 with
  standard deviation ``sd = sqrt((n_r + n_c + 1) / (12 n_r n_c))`` (the Mann-Whitney
  statistic's) where ``n_r``, ``n_c`` are each side's *effective* rows -
  ``(sum of copies)^2 / sum of copies^2`` over its distinct rows, ``n`` when no row
  repeats: copies of one row are not independent evidence. Drift when the AUC exceeds
  ``max(0.55, 0.5 + 4 sd)``. (The cross-validated AUC spreads about 1.25 times that
  ``sd`` without drift, measured from 50 to 500 rows a side - the two folds' AUCs are
  correlated - so the bound is about 3.2 of its real standard deviations: by the
  normal tail under one false alarm in 1,000 checks; 2 in 2,200 simulated ones, 60 to
  500 rows a side. Below 40 rows a side the classifier cannot split at all -
  20 rows a leaf - and the check cannot alert.) A side with too few
  distinct rows to split by group (one row repeated: a stuck input) gets an ``error``
  instead: the per-column tests see that case. Where rows repeat by nature (a table of
  a few categorical columns only) the groups are large and the check weak; the
  per-column chi-square tests are the check there.
"""

from __future__ import annotations

import importlib
import math
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from opsloop.data.profile import CATEGORICAL, NUMERIC
from opsloop.monitoring import columns as cols
from opsloop.monitoring import stats
from opsloop.monitoring.columns import Floats
from opsloop.monitoring.reference import ColumnRef

CLIP = 10.0
VARIANCE_KEPT = 0.9
CLASSIFIER_ROWS = 1000
CLASSIFIER_FOLDS = 2
CLASSIFIER_ROUNDS = 20
CLASSIFIER_LEAVES = 8
CLASSIFIER_MIN_LEAF = 20
CLASSIFIER_LEARNING_RATE = 0.15
CLASSIFIER_SIGMAS = 4.0
CLASSIFIER_MIN_AUC = 0.55
NAN_SENTINEL = 4 * CLIP  # outside every encoded value: NaN rows group together


def preload() -> None:
    """Import what the checks use on the calling thread (see ``stats.preload``: the
    classifier runs on a worker thread beside the column checks)."""
    for name in ("opsloop.monitoring._kernels", "scipy.stats", "threadpoolctl"):
        importlib.import_module(name)


def _one_blas_thread() -> Any:
    """BLAS and OpenMP on one thread for these small fits and products: they run beside
    the column threads, and on a busy machine the libraries' own threads spin
    (measured: the PCA fit of a 4,000 x 200 sample took 0.1 s of CPU on one thread,
    1.2-2 s on two). One controller, made once: making one reads the process's
    loaded libraries (2-3 ms, more than the products it limits)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


_CONTROLLER: Any = None


def row_groups(x: Floats) -> npt.NDArray[np.intp]:
    """A group number per row of ``x``, the same for identical rows (NaN equal to NaN).

    Rows are hashed (compiled, ``_kernels.row_groups``) and the rows sharing a hash
    compared; should two different rows ever share one, the rows are sorted instead.

    Example::

        row_groups(np.array([[1.0, np.nan], [2.0, 0.0], [1.0, np.nan]]))  # [0, 1, 0]
    """
    from opsloop.monitoring import _kernels

    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim == 2 and x.shape[0] and x.shape[1]:
        groups, ok = _kernels.row_groups(x)
        if ok:
            out: npt.NDArray[np.intp] = np.asarray(groups, dtype=np.intp)
            return out
    filled = np.where(np.isnan(x), NAN_SENTINEL, x) + 0.0  # + 0.0: -0.0 is 0.0
    _, inverse = np.unique(filled, axis=0, return_inverse=True)
    out = np.asarray(inverse, dtype=np.intp).reshape(-1)
    return out


def _effective_rows(groups: npt.NDArray[np.intp]) -> float:
    """Kish's effective sample size of rows that repeat: ``(sum c)^2 / sum c^2`` over
    the copies ``c`` of each distinct row."""
    c = np.unique(groups, return_counts=True)[1].astype(np.float64)
    return float(c.sum() ** 2 / np.sum(c**2))


def group_folds(
    y: npt.NDArray[Any], groups: npt.NDArray[np.intp], folds: int, seed: int
) -> list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] | None:
    """Stratified cross-validation splits (train, test) of rows labelled 0/1 in ``y``
    that keep each group in one fold; None when some training part would lack a label.

    What ``sklearn.model_selection.StratifiedGroupKFold`` does, in O(rows): that one
    loops in Python over every group (measured: 290 ms for 2,000 distinct rows, more
    than the classifier's two fits of them, 480 ms). Here the groups of several rows
    (largest first, ties in random order) go one by one to the fold that has the
    fewest rows of their labels so far; the single rows of each label, shuffled, then
    fill the folds up evenly.

    Example::

        group_folds(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 1, 2, 3, 3]), 2, seed=0)
        # [(array([2, 3]), array([0, 1, 4, 5])), (array([0, 1, 4, 5]), array([2, 3]))]
    """
    labels = np.asarray(y).astype(np.intp)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    per = [np.bincount(groups[labels == c], minlength=n_groups) for c in (0, 1)]
    size = per[0] + per[1]
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(n_groups, dtype=np.intp)
    have = [[0] * folds for _ in (0, 1)]  # rows of each label in each fold
    multi = np.flatnonzero(size > 1)
    multi = multi[rng.permutation(len(multi))]
    multi = multi[np.argsort(-size[multi], kind="stable")]
    for g, a, b in zip(multi.tolist(), per[0][multi].tolist(), per[1][multi].tolist(), strict=True):
        f = min(range(folds), key=lambda i: (have[0][i] * a + have[1][i] * b, i))
        fold_of[g] = f
        have[0][f] += a
        have[1][f] += b
    for c in (0, 1):
        single = np.flatnonzero((size == 1) & (per[c] == 1))
        single = single[rng.permutation(len(single))]
        take = _water_fill(have[c], len(single))
        fold_of[single] = np.repeat(np.arange(folds), take)
    row_fold = fold_of[groups]
    out = []
    for f in range(folds):
        test = np.flatnonzero(row_fold == f)
        train = np.flatnonzero(row_fold != f)
        if len(test) == 0 or len(np.unique(labels[train])) < 2:
            return None
        out.append((train, test))
    return out


def _water_fill(counts: list[int], items: int) -> list[int]:
    """How many of ``items`` each fold gets when each in turn goes to the fold with the
    fewest so far (the lowest-numbered on a tie), ``counts`` to start: in steps of
    levels, not item by item."""
    level = list(counts)
    take = [0] * len(level)
    left = items
    while left:
        low = min(level)
        tied = [i for i, c in enumerate(level) if c == low]
        higher = [c for c in level if c > low]
        rise = (min(higher) - low) if higher else None
        if rise is not None and left >= rise * len(tied):
            for i in tied:
                level[i] += rise
                take[i] += rise
            left -= rise * len(tied)
            continue
        q, r = divmod(left, len(tied))  # round-robin over the tied folds, lowest first
        for k, i in enumerate(tied):
            take[i] += q + (1 if k < r else 0)
        break
    return take


@dataclass
class Feature:
    name: str
    kind: str
    mean: float = 0.0
    scale: float = 1.0
    shares: dict[str, float] | None = None

    def encode_numeric(self, v: Floats) -> Floats:
        """Numeric values as the model sees them: z-scores, missing as 0, clipped."""
        with np.errstate(invalid="ignore", over="ignore"):
            z = (v - self.mean) / self.scale
        out: Floats = np.clip(np.nan_to_num(z, nan=0.0, posinf=CLIP, neginf=-CLIP), -CLIP, CLIP)
        return out


def sample_rows(rows: int, seed: int, size: int = 4000) -> npt.NDArray[np.intp]:
    """The rows ``encode`` samples from a table of ``rows`` rows, in order."""
    if not rows:
        return np.zeros(0, np.intp)
    rng = np.random.default_rng(seed)
    out: npt.NDArray[np.intp] = np.sort(rng.choice(rows, size=min(size, rows), replace=False))
    return out


@dataclass
class MultivariateModel:
    features: list[Feature]
    sample: Floats  # encoded reference rows
    mean: Floats  # PCA centre
    components: Floats  # k x features
    ref_errors: Floats  # sorted, from the held-out half
    # Each feature's std in the sample: PCA runs on standardised features, so a
    # category-share feature (spread ~0.1) weighs as much as a z-score (spread 1).
    scale: Floats = field(default_factory=lambda: np.ones(0))
    # The classifier's bins, from the sample (``bin_edges``): features x (NB - 1)
    # edges, +inf past each feature's ``n_edges``; and the sample binned by them.
    edges: Floats = field(default_factory=lambda: np.zeros((0, 0)))
    n_edges: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    # An orthonormal basis of what the components leave out, when smaller (``_errors``).
    residual: Floats = field(default_factory=lambda: np.zeros((0, 0)))
    _by_name: dict[str, Feature] | None = field(default=None, repr=False, compare=False)
    binned: npt.NDArray[np.uint8] = field(
        default_factory=lambda: np.zeros((0, 0), np.uint8), repr=False, compare=False
    )

    @classmethod
    def fit(
        cls, data: object, fitted: dict[str, ColumnRef], sample_size: int, seed: int
    ) -> MultivariateModel:
        feats: list[Feature] = []
        for c in fitted.values():
            if c.kind == NUMERIC and c.numeric is not None and c.numeric.n:
                std, mean = c.numeric.std, c.numeric.mean
                ok = math.isfinite(std) and std > 0 and math.isfinite(mean)
                feats.append(Feature(c.name, NUMERIC, mean if ok else 0.0, std if ok else 1.0))
            elif c.kind == CATEGORICAL and c.present:
                total = float(c.counts.sum())
                shares = {
                    lab: float(n) / total
                    for lab, n in zip(c.labels, c.counts.tolist(), strict=True)
                }
                feats.append(Feature(c.name, CATEGORICAL, shares=shares))
        model = cls(feats, np.zeros((0, len(feats))), np.zeros(0), np.zeros((0, 0)), np.zeros(0))
        model.sample = model.encode(data, seed, sample_size)
        with _one_blas_thread():
            model._fit_pca(seed)
        model._bin_sample()
        return model

    def _bin_sample(self, edges: tuple[Floats, npt.NDArray[np.int64]] | None = None) -> None:
        """The classifier's bins (``edges``, stored, or made from the sample) and the
        sample binned by them: fitting work, which a check only reads."""
        from opsloop.monitoring import _kernels

        self.edges, self.n_edges = edges if edges is not None else bin_edges(self.sample)
        self.binned = _kernels.bin_rows(np.ascontiguousarray(self.sample), self.edges, self.n_edges)

    def encode(
        self, data: object, seed: int, size: int = 4000, done: dict[str, Floats] | None = None
    ) -> Floats:
        """A sample of up to ``size`` rows of ``data`` (``sample_rows``), encoded.

        ``done``: features already encoded (``encode_column``, by a check that read
        the columns for its own tests), which are not read again."""
        idx = sample_rows(cols.num_rows(data), seed, size)
        present = set(cols.names(data))
        x = np.zeros((len(idx), len(self.features)), dtype=np.float64)
        for j, f in enumerate(self.features):
            if f.name not in present or not len(idx):
                continue
            pre = done.get(f.name) if done else None
            if pre is not None and len(pre) == len(idx):
                x[:, j] = pre
            elif f.kind == NUMERIC:
                try:
                    v = cols.read_numeric_rows(data, f.name, idx)
                except Exception:
                    continue
                x[:, j] = f.encode_numeric(v)
            else:
                try:
                    x[:, j] = cols.encode_labels(data, f.name, idx, f.shares or {})
                except Exception:  # a changed type encodes as "missing"
                    continue
        # Rounded to float32 as the stored sample is: the same precision on both sides
        # (else the classifier tells them apart by their last digits), and a reloaded
        # reference gives the same results.
        out: Floats = x.astype(np.float32).astype(np.float64)
        return out

    def encode_column(self, column: cols.Column, rows: npt.NDArray[np.intp]) -> Floats | None:
        """The ``rows`` of a read current column encoded as ``encode`` would (None when
        it cannot be done from what was read: ``encode`` then reads the column)."""
        f = self._feature(column.name)
        if f is None:
            return None
        if f.kind == NUMERIC and column.kind == NUMERIC and column.values is not None:
            from opsloop.monitoring._kernels import encode_rows

            out: Floats = encode_rows(column.values, rows.astype(np.int64), f.mean, f.scale, CLIP)
            return out
        if f.kind == CATEGORICAL and column.kind == CATEGORICAL and column.codes is not None:
            # codes: each row's position among the first n_known labels (the
            # reference's), n_known where missing or unseen (encoded as 0)
            shares = f.shares or {}
            table = np.zeros(column.n_known + 1)
            for i, lab in enumerate(column.labels[: column.n_known]):
                table[i] = shares.get(lab, 0.0)
            out = table[column.codes[rows]]
            return out
        return None

    def _feature(self, name: str) -> Feature | None:
        if self._by_name is None:
            self._by_name = {f.name: f for f in self.features}
        return self._by_name.get(name)

    def _fit_pca(self, seed: int) -> None:
        x = self.sample
        n, p = x.shape
        if n < 4 or p < 2:
            return
        sd = x.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)
        self.mean = x.mean(axis=0)
        perm = np.random.default_rng(seed + 1).permutation(n)
        a, b = x[perm[: n // 2]], x[perm[n // 2 :]]
        za = self._standard(a)
        _, s, vt = np.linalg.svd(za - za.mean(axis=0), full_matrices=False)
        var = s**2
        total = float(var.sum())
        if total <= 0:
            self.mean = np.zeros(0)
            return
        k = int(np.searchsorted(np.cumsum(var) / total, VARIANCE_KEPT) + 1)
        k = max(1, min(k, p - 1))
        self.components = vt[:k]
        if vt.shape[0] == p and p - k < 2 * k:
            # The rest of the basis: an error is then one product with p - k rows
            # instead of two with k (the same error: the squared norm of what the
            # components leave out).
            self.residual = vt[k:]
        self.ref_errors = np.sort(self._errors(b))

    def _standard(self, x: Floats) -> Floats:
        # Clipped, so one rare or unseen category cannot dominate the error alone.
        z: Floats = np.clip((x - self.mean) / self.scale, -CLIP, CLIP)
        return z

    def _errors(self, x: Floats) -> Floats:
        c = self._standard(x)
        if self.residual.shape[0] and self.residual.shape[1] == c.shape[1]:
            r = c @ self.residual.T
            out: Floats = np.einsum("ij,ij->i", r, r)
            return out
        rec = (c @ self.components.T) @ self.components
        out = np.sum((c - rec) ** 2, axis=1)
        return out

    def pca_check(self, x_cur: Floats) -> dict[str, Any]:
        if not len(self.ref_errors):
            return {"error": "PCA needs at least 2 usable columns and 4 reference rows"}
        if not len(x_cur):
            return {"error": "the current data has no rows"}
        with _one_blas_thread():
            cur = np.sort(self._errors(x_cur))
        ref_mean = float(self.ref_errors.mean())
        cur_mean = float(cur.mean())
        if ref_mean <= 0:
            ratio = 1.0 if cur_mean <= 0 else math.inf
            cv = 0.0
        else:
            ratio = cur_mean / ref_mean
            cv = float(self.ref_errors.std()) / ref_mean
        se = cv * math.sqrt(1 / len(self.ref_errors) + 1 / len(cur))
        threshold = 1 + max(0.05, 3 * se)
        d, p = stats.ks(self.ref_errors, cur)
        return {
            "statistic": ratio if math.isfinite(ratio) else None,
            "reference_mean_error": ref_mean,
            "current_mean_error": cur_mean,
            "components": int(self.components.shape[0]),
            "ks_statistic": d,
            "p_value": p,
            "threshold": threshold,
            "drifted": bool(ratio > threshold),
            "summary": f"reconstruction error x{ratio:.3g}, threshold x{threshold:.3g}",
        }

    def classifier_check(
        self, x_cur: Floats, seed: int, pool: Executor | None = None
    ) -> dict[str, Any]:
        """The domain classifier (module docstring); ``pool``: a thread pool that
        fits one fold while the calling thread fits the other."""
        n = min(CLASSIFIER_ROWS, len(self.sample), len(x_cur))
        if n < 10:
            return {"error": f"the domain classifier needs 10 rows on each side, has {n}"}
        if not self.features:
            return {"error": "no usable columns"}
        from opsloop.monitoring import _kernels

        rng = np.random.default_rng(seed + 2)
        ir = rng.choice(len(self.sample), n, replace=False)
        ic = rng.choice(len(x_cur), n, replace=False)
        xc = np.ascontiguousarray(x_cur[ic])
        x = np.vstack([self.sample[ir], xc])
        y = np.concatenate([np.zeros(n), np.ones(n)])
        groups = row_groups(x)
        cv = group_folds(y, groups, CLASSIFIER_FOLDS, seed)
        if cv is None:
            return {
                "error": "the domain classifier needs more distinct rows: with identical rows "
                f"kept in one fold, a side is left out of training (distinct rows: "
                f"{len(np.unique(groups[:n]))} of the reference's {n}, "
                f"{len(np.unique(groups[n:]))} of the current's {n})"
            }
        # The reference's rows were binned by the fit; the current's are binned by the
        # same edges (the reference sample's: a current value past them has a bin of
        # its own).
        if self.binned.shape != self.sample.shape:
            self._bin_sample()
        xb = np.vstack([self.binned[ir], _kernels.bin_rows(xc, self.edges, self.n_edges)])
        n_bins = self.n_edges + 1
        score = np.empty(2 * n)

        def fold(split: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]) -> None:
            train, test = split
            score[test] = _kernels.boost(
                xb,
                n_bins,
                y,
                train.astype(np.int64),
                test.astype(np.int64),
                CLASSIFIER_ROUNDS,
                CLASSIFIER_LEAVES,
                CLASSIFIER_MIN_LEAF,
                CLASSIFIER_LEARNING_RATE,
            )

        others = [pool.submit(fold, split) for split in cv[1:]] if pool is not None else []
        for split in cv if pool is None else cv[:1]:
            fold(split)
        for fut in others:
            fut.result()
        auc = roc_auc(y, score)
        n_r, n_c = _effective_rows(groups[:n]), _effective_rows(groups[n:])
        sd = math.sqrt((n_r + n_c + 1) / (12 * n_r * n_c))
        threshold = max(CLASSIFIER_MIN_AUC, 0.5 + CLASSIFIER_SIGMAS * sd)
        return {
            "statistic": auc,
            "rows_per_side": n,
            "effective_rows": [round(n_r, 1), round(n_c, 1)],
            "threshold": threshold,
            "drifted": bool(auc > threshold),
            "summary": f"AUC {auc:.3f}, threshold {threshold:.3f}",
        }

    # -- stored form -------------------------------------------------------------------

    def to_meta(self, arrays: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        arrays["mv_sample"] = self.sample.astype(np.float32)
        arrays["mv_mean"] = self.mean
        arrays["mv_components"] = self.components
        arrays["mv_ref_errors"] = self.ref_errors
        arrays["mv_scale"] = self.scale
        arrays["mv_edges"] = self.edges
        arrays["mv_residual"] = self.residual
        arrays["mv_n_edges"] = self.n_edges
        return {
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "mean": f.mean,
                    "scale": f.scale,
                    "shares": f.shares,
                }
                for f in self.features
            ]
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], arrays: dict[str, Any]) -> MultivariateModel:
        feats = [
            Feature(f["name"], f["kind"], float(f["mean"]), float(f["scale"]), f.get("shares"))
            for f in meta["features"]
        ]
        model = cls(
            feats,
            np.asarray(arrays["mv_sample"], dtype=np.float64),
            np.asarray(arrays["mv_mean"], dtype=np.float64),
            np.asarray(arrays["mv_components"], dtype=np.float64),
            np.asarray(arrays["mv_ref_errors"], dtype=np.float64),
            np.asarray(arrays.get("mv_scale", np.ones(len(feats))), dtype=np.float64),
        )
        if "mv_residual" in arrays:
            model.residual = np.asarray(arrays["mv_residual"], dtype=np.float64)
        stored = None
        if "mv_edges" in arrays and "mv_n_edges" in arrays:  # older references: made here
            stored = (
                np.asarray(arrays["mv_edges"], dtype=np.float64),
                np.asarray(arrays["mv_n_edges"], dtype=np.int64),
            )
        model._bin_sample(stored)
        return model


def bin_edges(sample: Floats) -> tuple[Floats, npt.NDArray[np.int64]]:
    """The domain classifier's bin edges of each feature (column) of ``sample``.

    A feature with at most ``NB - 2`` distinct values gets a bin for each (edges
    halfway between them), others ``NB - 4`` quantile edges; and either gets a bin
    below its least and one above its greatest value: a current value outside the
    reference sample's range is never binned with the reference's own values. The
    edges fill a ``features x (NB - 1)`` array, padded with +inf, ``n_edges`` of them
    used in each row (a value's bin: how many edges are below it).
    """
    from opsloop.monitoring._kernels import NB

    if sample.ndim != 2 or not sample.shape[0]:
        p = sample.shape[1] if sample.ndim == 2 else 0
        return np.full((p, NB - 1), np.inf), np.zeros(p, dtype=np.int64)
    n, p = sample.shape
    srt = np.sort(sample.T, axis=1)  # a feature a row (the sample has no NaN)
    edges = np.full((p, NB - 1), np.inf)
    n_edges = np.zeros(p, dtype=np.int64)
    # numpy's "linear" quantiles, from the sorted values, for every feature at once
    at = np.linspace(0.0, 1.0, NB - 2)[1:-1] * (n - 1)
    below = np.floor(at).astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    frac = at - below
    quant = srt[:, below] + frac * (srt[:, above] - srt[:, below])
    steps = srt[:, 1:] != srt[:, :-1]
    distinct = np.count_nonzero(steps, axis=1) + 1
    for j in range(p):
        s = srt[j]
        if distinct[j] <= NB - 2:
            u = s[np.concatenate(([True], steps[j]))]
            inner = (u[:-1] + u[1:]) / 2
        else:
            inner = quant[j]
        e = np.unique(np.concatenate(([np.nextafter(s[0], -np.inf)], inner, [s[-1]])))
        edges[j, : len(e)] = e
        n_edges[j] = len(e)
    return edges, n_edges


def roc_auc(y: Floats, score: Floats) -> float:
    """The area under the ROC curve of ``score`` for the 0/1 labels ``y`` (ties count
    a half): the Mann-Whitney statistic over ``n_0 n_1``, as
    ``sklearn.metrics.roc_auc_score``."""
    from scipy.stats import rankdata  # type: ignore[import-untyped]

    ranks = rankdata(score)
    pos = y == 1
    n1 = float(np.count_nonzero(pos))
    n0 = float(len(y)) - n1
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))
