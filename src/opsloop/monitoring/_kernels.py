"""The drift checks' inner loops, compiled with numba (``nogil``: the column threads
run them side by side).

- ``numeric_scan``: one pass over a current numeric column: its missing and infinite
  counts, the values outside the reference's range and - given the reference's
  Wasserstein cells (``stats.WGrid``) - the exact Wasserstein distance, without
  sorting the column (``stats.wasserstein_unsorted`` documents the method).

Imported on first use (numba's import is not free); ``preload`` imports it on the
calling thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def numeric_scan(  # type: ignore[no-untyped-def]
    x, ref_min, ref_max, e, starts, sums, sorted_ref, want_w
):
    """(missing, +inf, -inf, below ``ref_min``, above ``ref_max``, W) of ``x``.

    W is ``scipy.stats.wasserstein_distance(sorted_ref, finite x)`` when ``want_w``
    (``e``, ``starts``, ``sums``: the reference's cells), else NaN; NaN too when ``x``
    has no finite value.
    """
    m_all = x.shape[0]
    n_nan = 0
    n_pinf = 0
    n_ninf = 0
    below = 0
    above = 0
    if not want_w:
        for i in range(m_all):
            v = x[i]
            if v - v != 0.0:  # NaN or +-inf
                if v != v:
                    n_nan += 1
                elif v > 0:
                    n_pinf += 1
                else:
                    n_ninf += 1
            elif v < ref_min:
                below += 1
            elif v > ref_max:
                above += 1
        return n_nan, n_pinf, n_ninf, below, above, math.nan
    cells = e.shape[0] - 1  # real cells; padded c: 0 below e[0], 1..cells, cells+1 from e[-1]
    # Each padded cell's count and sum of (value - its lower edge), side by side.
    cs = np.zeros(2 * (cells + 2), np.float64)
    cell = np.empty(m_all, np.int32)
    lo = e[1]
    inv_w = (cells - 2) / (e[cells - 1] - lo)
    shift = 2.0 - lo * inv_w
    if not math.isfinite(shift):  # lo * inv_w overflows: the slower, safe form
        shift = math.nan
    top = cells + 1.0
    emin = e[0]
    emax = e[cells]
    for i in range(m_all):
        v = x[i]
        if v - v != 0.0:  # NaN or +-inf
            if v != v:
                n_nan += 1
            elif v > 0:
                n_pinf += 1
            else:
                n_ninf += 1
            cell[i] = -1
            continue
        below += v < ref_min
        above += v > ref_max
        # The cell by arithmetic (evenly spaced between e[1] and e[-2]); the few
        # values rounding puts one cell off, and the tails, found by search.
        t = v * inv_w + shift if shift == shift else (v - lo) * inv_w + 2.0
        t = min(max(t, 0.0), top)
        c = int(t)
        if c >= 1 and c <= cells:
            lower = e[c - 1]
            ok = v >= lower and v < e[c]
        elif c == 0:
            lower = emin
            ok = v < emin
        else:
            lower = emax
            ok = v >= emax
        if not ok:
            c = np.searchsorted(e, v, side="right")
            lower = emin if c == 0 else e[c - 1]
        cs[2 * c] += 1.0
        cs[2 * c + 1] += v - lower
        cell[i] = c
    m = m_all - n_nan - n_pinf - n_ninf
    if m == 0:
        return n_nan, n_pinf, n_ninf, below, above, math.nan
    n = sorted_ref.shape[0]
    fn = float(n)
    fm = float(m)
    nm = fn * fm
    big = nm > 2.0**62
    # The tails: F_ref is 0 below the minimum and 1 from the maximum.
    total = (cs[2 * cells + 3] - cs[1]) / fm
    mixed = np.zeros(cells, np.bool_)
    cbelow = np.zeros(cells, np.int64)  # current values below each real cell
    n_mixed = 0  # current values in the mixed cells
    any_mixed = False
    cb = np.int64(cs[0])
    for k in range(cells):
        cc = np.int64(cs[2 * k + 2])
        rb = starts[k]
        rc = starts[k + 1] - rb
        cbelow[k] = cb
        if big:
            lo_gap_neg = float(rb) * fm - float(cb + cc) * fn < 0.0
            hi_gap_pos = float(rb + rc) * fm - float(cb) * fn > 0.0
        else:
            lo_gap_neg = rb * m - (cb + cc) * n < 0
            hi_gap_pos = (rb + rc) * m - cb * n > 0
        if lo_gap_neg and hi_gap_pos:
            # F_ref - F_cur may change sign in the cell: merged exactly below.
            mixed[k] = True
            any_mixed = True
            n_mixed += int(cc)
        else:
            # One sign over the cell: |integral of F_ref - integral of F_cur| from the
            # counts and the sums of (value - lower edge).
            gap = float(rb + rc) * fm - float(cb + cc) * fn
            inner = (e[k + 1] - e[k]) * gap / nm - (sums[k] / fn - cs[2 * k + 3] / fm)
            total += abs(inner)
        cb += cc
    if not any_mixed:
        return n_nan, n_pinf, n_ninf, below, above, total
    # The current values of the mixed cells, grouped by cell (a counting sort).
    off = np.zeros(cells + 1, np.int64)
    for k in range(cells):
        off[k + 1] = off[k] + (np.int64(cs[2 * k + 2]) if mixed[k] else 0)
    fill = off[:-1].copy()
    buf = np.empty(n_mixed, np.float64)
    for i in range(m_all):
        c = cell[i]
        if c >= 1 and c <= cells and mixed[c - 1]:
            buf[fill[c - 1]] = x[i]
            fill[c - 1] += 1
    for k in range(cells):
        if not mixed[k]:
            continue
        seg = buf[off[k] : off[k + 1]]
        _insertion_sort(seg)
        # Integrate |F_ref - F_cur| over [e[k], e[k + 1]) along the merged values.
        fr = starts[k]
        fc = cbelow[k]
        i = starts[k]
        i_end = starts[k + 1]
        j = 0
        j_end = seg.shape[0]
        pos = e[k]
        acc = 0.0
        while i < i_end or j < j_end:
            if j >= j_end or (i < i_end and sorted_ref[i] <= seg[j]):
                v = sorted_ref[i]
                acc += abs(float(fr) * fm - float(fc) * fn) * (v - pos)
                fr += 1
                i += 1
            else:
                v = seg[j]
                acc += abs(float(fr) * fm - float(fc) * fn) * (v - pos)
                fc += 1
                j += 1
            pos = v
        acc += abs(float(fr) * fm - float(fc) * fn) * (e[k + 1] - pos)
        total += acc / nm
    return n_nan, n_pinf, n_ninf, below, above, total


@njit(nogil=True, cache=True, inline="always")
def _insertion_sort(a):  # type: ignore[no-untyped-def]
    """Sort a few values in place (a cell holds a handful: no call into a general sort)."""
    if a.shape[0] > 32:
        a.sort()
        return
    for i in range(1, a.shape[0]):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
