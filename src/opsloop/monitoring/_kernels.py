"""The drift checks' inner loops, compiled with numba (``nogil``: the column threads
run them side by side).

- ``numeric_scan``: one pass over a current numeric column: its missing and infinite
  counts, the values outside the reference's range and - given the reference's
  Wasserstein cells (``stats.WGrid``) - the exact Wasserstein distance, without
  sorting the column (``stats.wasserstein_unsorted`` documents the method).
- ``bincount``: counts of small integer codes (a string column's categories);
  ``encode_rows``: a numeric column's rows as the multivariate model sees them.
- ``bin_rows``, ``boost``: the domain classifier's binning and gradient-boosted
  trees (``multivariate`` documents them); ``row_groups``: identical rows by hash.

Imported on first use (numba's import is not free); ``preload`` imports it on the
calling thread.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

EPS = 2.0**-52


@njit(nogil=True, cache=True)
def _cell_checked(v, e, cells, c):  # type: ignore[no-untyped-def]
    """The padded cell of finite ``v`` (``numeric_scan``) given ``c`` from arithmetic:
    ``c`` if the edges agree, else found by search."""
    if c >= 1 and c <= cells:
        ok = v >= e[c - 1] and v < e[c]
    elif c == 0:
        ok = v < e[0]
    else:
        ok = v >= e[cells]
    return c if ok else np.searchsorted(e, v, side="right")


@njit(nogil=True, cache=True, error_model="numpy")
def numeric_scan(  # type: ignore[no-untyped-def]
    x, ref_min, ref_max, e, starts, sums, sorted_ref, want_w
):
    """(missing, +inf, -inf, below ``ref_min``, above ``ref_max``, W) of ``x``.

    W is ``scipy.stats.wasserstein_distance(sorted_ref, finite x)`` when ``want_w``
    (``e``, ``starts``, ``sums``: the reference's cells), else NaN; NaN too when ``x``
    has no finite value.

    The cells: ``e`` (length ``cells + 1``) is the reference's minimum, evenly spaced
    points from ``e[1]`` to ``e[-2]``, its maximum; padded cell ``c`` is 0 below
    ``e[0]``, ``[e[c - 1], e[c])`` for ``1 <= c <= cells``, ``cells + 1`` from ``e[-1]``.
    A value's cell comes from arithmetic; it is checked against the edges (two reads
    of a large array, the pass's main cost) only within a rounding bound of an edge.
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
    cells = e.shape[0] - 1
    lo = e[1]
    inv_w = (cells - 2) / (e[cells - 1] - lo)
    shift = 2.0 - lo * inv_w
    fast = math.isfinite(shift)  # else lo * inv_w overflows: the slower, safe form
    top = cells + 1.0
    # How far (in cells) rounding can move a value's computed position, or an edge,
    # from the exact one: a few roundings of numbers up to |lo| + |hi| (the edges are
    # lo + k w) and of the arithmetic itself; eight times over. Beyond 1/16, or if
    # undefined, every value is checked.
    margin = 8.0 * EPS * ((abs(lo) + abs(e[cells - 1])) * inv_w + cells + 2.0)
    if not (margin < 0.0625):
        margin = 1.0
    # Each padded cell's count and sum of (value - lo), side by side (lo rather than
    # the cell's own lower edge, which is not read for most values; the sums are
    # moved to the lower edges once per cell below).
    cs = np.zeros(2 * (cells + 2), np.float64)
    cell = np.empty(m_all, np.int32)  # each value's padded cell (0 if not finite: unused)
    for i in range(m_all):
        v = x[i]
        if v - v != 0.0:  # NaN or +-inf
            if v != v:
                n_nan += 1
            elif v > 0:
                n_pinf += 1
            else:
                n_ninf += 1
            cell[i] = 0
            continue
        below += v < ref_min
        above += v > ref_max
        # The cell by arithmetic, checked against the edges when near one (the same
        # lines in the second pass below).
        t = v * inv_w + shift if fast else (v - lo) * inv_w + 2.0
        t = min(max(t, 0.0), top)
        c = int(t)
        f = t - c
        if not (c >= 2 and c < cells and f > margin and f < 1.0 - margin):
            c = _cell_checked(v, e, cells, c)
        cell[i] = c
        cs[2 * c] += 1.0
        cs[2 * c + 1] += v - lo
    m = m_all - n_nan - n_pinf - n_ninf
    if m == 0:
        return n_nan, n_pinf, n_ninf, below, above, math.nan
    n = sorted_ref.shape[0]
    fn = float(n)
    fm = float(m)
    nm = fn * fm
    big = nm > 2.0**62
    # The tails: F_ref is 0 below the minimum and 1 from the maximum.
    low_tail = cs[1] - cs[0] * (e[0] - lo)  # sum of (value - minimum), <= 0
    high_tail = cs[2 * cells + 3] - cs[2 * cells + 2] * (e[cells] - lo)  # of (value - max)
    total = (high_tail - low_tail) / fm
    mixed = np.zeros(cells + 2, np.bool_)  # by padded cell
    cbelow = np.empty(cells, np.int64)  # current values below each real cell
    n_mixed = 0  # current values in the mixed cells
    any_mixed = False
    cb = np.int64(cs[0])
    for k in range(cells):  # real cell k, padded k + 1: [e[k], e[k + 1])
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
            mixed[k + 1] = True
            any_mixed = True
            n_mixed += int(cc)
        else:
            # One sign over the cell: |integral of F_ref - integral of F_cur| from the
            # counts and the sums of (value - lower edge).
            gap = float(rb + rc) * fm - float(cb + cc) * fn
            cur_sum = cs[2 * k + 3] - cs[2 * k + 2] * (e[k] - lo)
            inner = (e[k + 1] - e[k]) * gap / nm - (sums[k] / fn - cur_sum / fm)
            total += abs(inner)
        cb += cc
    if not any_mixed:
        return n_nan, n_pinf, n_ninf, below, above, total
    # The current values of the mixed cells, grouped by cell (a counting sort).
    off = np.zeros(cells + 1, np.int64)
    for k in range(cells):
        off[k + 1] = off[k] + (np.int64(cs[2 * k + 2]) if mixed[k + 1] else 0)
    fill = off[:-1].copy()
    buf = np.empty(n_mixed, np.float64)
    for i in range(m_all):
        c = cell[i]
        if mixed[c]:
            buf[fill[c - 1]] = x[i]
            fill[c - 1] += 1
    for k in range(cells):
        if not mixed[k + 1]:
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


@njit(nogil=True, cache=True, error_model="numpy")
def encode_rows(x, rows, mean, scale, clip):  # type: ignore[no-untyped-def]
    """``x[rows]`` as z-scores ``(v - mean) / scale``, NaN as 0, clipped to
    ``[-clip, clip]`` (+-inf to the bounds)."""
    out = np.empty(rows.shape[0], np.float64)
    for i in range(rows.shape[0]):
        z = (x[rows[i]] - mean) / scale
        if z != z:
            z = 0.0
        out[i] = min(max(z, -clip), clip)
    return out


@njit(nogil=True, cache=True)
def bincount(codes, k):  # type: ignore[no-untyped-def]
    """How many of ``codes`` (integers in ``[0, k)``) equal each of ``0 .. k - 1``
    (``np.bincount`` without its cast of the codes to intp)."""
    out = np.zeros(k, np.int64)
    for i in range(codes.shape[0]):
        out[codes[i]] += 1
    return out


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


# -- the domain classifier ------------------------------------------------------------
#
# Gradient-boosted trees on binned features, as scikit-learn's
# HistGradientBoostingClassifier grows them (log loss, the prior's log-odds to start,
# leaf-wise growth to ``max_leaves`` leaves, the best split by the gain
# G_L^2/H_L + G_R^2/H_R - G^2/H with at least ``min_leaf`` rows and 1e-3 hessian on each
# side, leaf values -lr G/H, the larger child's histogram as its parent's minus the
# smaller's), without its binning: the rows come binned (``bin_rows``, at most NB bins
# a feature).

NB = 64  # bins a feature, at most (``bin_rows`` is written for 64)
MIN_HESSIAN = 1e-3


@njit(nogil=True, cache=True)
def bin_rows(x, edges, n_edges):  # type: ignore[no-untyped-def]
    """Each value's bin: how many of its feature's edges are below it (``uint8``).

    ``edges``: a row of ``NB - 1`` sorted edges a feature, padded with +inf."""
    rows, p = x.shape
    out = np.empty((rows, p), np.uint8)
    for i in range(rows):
        for j in range(p):
            v = x[i, j]
            # Six halvings of the NB - 1 edges, written out: no branch to mispredict.
            pos = 32 * (edges[j, 31] < v)
            pos += 16 * (edges[j, pos + 15] < v)
            pos += 8 * (edges[j, pos + 7] < v)
            pos += 4 * (edges[j, pos + 3] < v)
            pos += 2 * (edges[j, pos + 1] < v)
            pos += edges[j, pos] < v
            out[i, j] = pos
    return out


@njit(nogil=True, cache=True)
def _histogram(xb, n_bins, rows, start, stop, g, h, hist):  # type: ignore[no-untyped-def]
    p = xb.shape[1]
    for f in range(p):
        for b in range(n_bins[f]):
            hist[f, b, 0] = 0.0
            hist[f, b, 1] = 0.0
            hist[f, b, 2] = 0.0
    for k in range(start, stop):
        r = rows[k]
        gr = g[r]
        hr = h[r]
        for f in range(p):
            b = xb[r, f]
            hist[f, b, 0] += gr
            hist[f, b, 1] += hr
            hist[f, b, 2] += 1.0


@njit(nogil=True, cache=True)
def _best_split(hist, n_bins, g_sum, h_sum, count, min_leaf):  # type: ignore[no-untyped-def]
    """(gain, feature, last bin of the left side) of a node's best split; gain 0: none."""
    p = hist.shape[0]
    parent = g_sum * g_sum / h_sum
    best_gain = 0.0
    best_f = -1
    best_b = -1
    for f in range(p):
        gl = 0.0
        hl = 0.0
        cl = 0.0
        for b in range(n_bins[f] - 1):
            c = hist[f, b, 2]
            if c == 0.0:  # the same split as at the bin before
                continue
            gl += hist[f, b, 0]
            hl += hist[f, b, 1]
            cl += c
            if cl < min_leaf:
                continue
            cr = count - cl
            if cr < min_leaf:
                break
            hr = h_sum - hl
            if hl < MIN_HESSIAN or hr < MIN_HESSIAN:
                continue
            gr = g_sum - gl
            gain = gl * gl / hl + gr * gr / hr - parent
            if gain > best_gain:
                best_gain = gain
                best_f = f
                best_b = b
    return best_gain, best_f, best_b


@njit(nogil=True, cache=True)
def boost(xb, n_bins, y, train, test, rounds, max_leaves, min_leaf, lr):  # type: ignore[no-untyped-def]
    """Raw scores (log-odds) of the rows ``test`` of the binned rows ``xb`` from
    ``rounds`` trees fitted to the rows ``train`` labelled 0/1 in ``y``."""
    p = xb.shape[1]
    ntr = train.shape[0]
    nte = test.shape[0]
    xt = np.empty((ntr, p), np.uint8)
    yt = np.empty(ntr, np.float64)
    for k in range(ntr):
        xt[k] = xb[train[k]]
        yt[k] = y[train[k]]
    prior = min(max(yt.mean(), 1e-12), 1.0 - 1e-12)
    raw0 = math.log(prior / (1.0 - prior))
    raw = np.full(ntr, raw0)
    out = np.full(nte, raw0)
    g = np.empty(ntr)
    h = np.empty(ntr)
    nodes = 2 * max_leaves
    # A histogram a leaf (the root's, then one more a split: the larger child takes
    # its parent's); each is cleared where used, for a feature's bins only.
    slots = max_leaves + 1
    hists = np.empty((slots, p, NB, 3))
    slot_free = np.empty(slots, np.int64)
    rows = np.empty(ntr, np.int64)
    tmp = np.empty(ntr, np.int64)
    # The nodes of one tree.
    n_start = np.empty(nodes, np.int64)
    n_stop = np.empty(nodes, np.int64)
    n_g = np.empty(nodes)
    n_h = np.empty(nodes)
    n_slot = np.empty(nodes, np.int64)
    n_gain = np.empty(nodes)
    n_feat = np.empty(nodes, np.int64)
    n_bin = np.empty(nodes, np.int64)
    n_left = np.empty(nodes, np.int64)
    n_right = np.empty(nodes, np.int64)
    n_value = np.empty(nodes)
    open_leaf = np.zeros(nodes, np.bool_)  # a leaf that may still split
    for _ in range(rounds):
        for k in range(ntr):
            pk = 1.0 / (1.0 + math.exp(-raw[k]))
            g[k] = pk - yt[k]
            h[k] = pk * (1.0 - pk)
            rows[k] = k
        for s in range(slots):
            slot_free[s] = slots - 1 - s
        n_free = slots
        n_free -= 1
        root_slot = slot_free[n_free]
        _histogram(xt, n_bins, rows, 0, ntr, g, h, hists[root_slot])
        n_start[0] = 0
        n_stop[0] = ntr
        n_g[0] = g.sum()
        n_h[0] = h.sum()
        n_slot[0] = root_slot
        n_left[0] = -1
        n_right[0] = -1
        n_nodes = 1
        leaves = 1
        open_leaf[:] = False
        if ntr >= 2 * min_leaf and n_h[0] >= MIN_HESSIAN:
            gain, f, b = _best_split(hists[root_slot], n_bins, n_g[0], n_h[0], ntr, min_leaf)
            n_gain[0] = gain
            n_feat[0] = f
            n_bin[0] = b
            open_leaf[0] = f >= 0
        while leaves < max_leaves:
            best = -1
            for k in range(n_nodes):
                if open_leaf[k] and (best < 0 or n_gain[k] > n_gain[best]):
                    best = k
            if best < 0:
                break
            open_leaf[best] = False
            f = n_feat[best]
            b = n_bin[best]
            lo = n_start[best]
            hi = n_stop[best]
            # Partition the node's rows: bin <= b to the left, stable.
            nl = 0
            nr = 0
            for k in range(lo, hi):
                r = rows[k]
                if xt[r, f] <= b:
                    rows[lo + nl] = r
                    nl += 1
                else:
                    tmp[nr] = r
                    nr += 1
            for k in range(nr):
                rows[lo + nl + k] = tmp[k]
            left = n_nodes
            right = n_nodes + 1
            n_nodes += 2
            leaves += 1
            n_left[best] = left
            n_right[best] = right
            n_start[left] = lo
            n_stop[left] = lo + nl
            n_start[right] = lo + nl
            n_stop[right] = hi
            n_left[left] = -1
            n_right[left] = -1
            n_left[right] = -1
            n_right[right] = -1
            # The smaller child's histogram from its rows, the larger's by subtraction
            # (in the parent's slot).
            parent = n_slot[best]
            n_free -= 1
            fresh = slot_free[n_free]
            small, large = (left, right) if nl <= nr else (right, left)
            _histogram(xt, n_bins, rows, n_start[small], n_stop[small], g, h, hists[fresh])
            hp = hists[parent]
            hs = hists[fresh]
            for ff in range(p):
                for bb in range(n_bins[ff]):
                    for c in range(3):
                        hp[ff, bb, c] -= hs[ff, bb, c]
            n_slot[small] = fresh
            n_slot[large] = parent
            for child in (left, right):
                gs = 0.0
                hs_ = 0.0
                for k in range(n_start[child], n_stop[child]):
                    gs += g[rows[k]]
                    hs_ += h[rows[k]]
                n_g[child] = gs
                n_h[child] = hs_
                cnt = n_stop[child] - n_start[child]
                open_leaf[child] = False
                if cnt >= 2 * min_leaf and hs_ >= MIN_HESSIAN:
                    gain, ff2, bb2 = _best_split(
                        hists[n_slot[child]], n_bins, gs, hs_, cnt, min_leaf
                    )
                    n_gain[child] = gain
                    n_feat[child] = ff2
                    n_bin[child] = bb2
                    open_leaf[child] = ff2 >= 0
        # Leaf values, and the training rows' scores.
        for k in range(n_nodes):
            if n_left[k] < 0:
                v = -lr * n_g[k] / n_h[k] if n_h[k] > 0 else 0.0
                n_value[k] = v
                for q in range(n_start[k], n_stop[k]):
                    raw[rows[q]] += v
        for q in range(nte):
            r = test[q]
            k = 0
            while n_left[k] >= 0:
                k = n_left[k] if xb[r, n_feat[k]] <= n_bin[k] else n_right[k]
            out[q] += n_value[k]
    return out


NAN_BITS = np.uint64(0x7FF8000000000000)
NEG_ZERO = np.uint64(0x8000000000000000)


@njit(nogil=True, cache=True)
def row_groups(x):  # type: ignore[no-untyped-def]
    """A group number per row of ``x`` (C-contiguous float64), equal for identical rows
    (NaN equal to NaN, -0.0 to 0.0), and whether that held: False when two different
    rows shared a hash (the caller then groups by sorting the rows themselves)."""
    rows, p = x.shape
    bits = x.reshape(rows * p).view(np.uint64)
    h = np.empty(rows, np.uint64)
    for i in range(rows):
        acc = np.uint64(0x9E3779B97F4A7C15)
        for j in range(p):
            v = x[i, j]
            b = bits[i * p + j]
            if v != v:
                b = NAN_BITS
            elif b == NEG_ZERO:
                b = np.uint64(0)
            # splitmix64's finaliser over the running value
            z = acc ^ b
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            acc = z ^ (z >> np.uint64(31))
        h[i] = acc
    order = np.argsort(h, kind="mergesort")
    groups = np.empty(rows, np.intp)
    ok = True
    gid = -1
    first = -1
    for k in range(rows):
        i = order[k]
        if k == 0 or h[i] != h[order[k - 1]]:
            gid += 1
            first = i
        else:
            for j in range(p):
                a = x[i, j]
                b2 = x[first, j]
                if not (a == b2 or (a != a and b2 != b2)):
                    ok = False
                    break
        groups[i] = gid
    return groups, ok
