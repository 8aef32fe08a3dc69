"""The streaming detector's arithmetic, compiled with numba.

One function, ``step``, takes the detector's whole state (one float64 vector, updated in
place), its parameters and one point, and returns the point's score. ``run`` calls the
same ``step`` over arrays, so the batch path gives bit-for-bit the scores of feeding the
points one at a time. Everything is O(1) per point and the state never grows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# --- state layout ------------------------------------------------------------------
N = 0  # points accepted (finite values)
LAST_T = 1  # newest timestamp seen (s)
M_SLOW = 2  # slow EW mean of the value
D_SLOW = 3  # EW mean absolute deviation around M_SLOW
M_FAST = 4  # fast EW mean (the local level)
D_INNOV = 5  # EW mean |value - local level|
DT = 6  # typical spacing of timestamps (s), EW over positive steps
QUIET = 7  # points left in the quiet period after an alert
D_SEAS = 8  # EW mean |value - daily expectation|
PREV = 9  # previous finite value
D_DIFF_FAST = 10  # fast EW mean |first difference|
D_DIFF_SLOW = 11  # slow EW mean |first difference|
NAN = 12  # NaN or infinite values seen
SEEN_T = 13  # 1 once a timestamp was seen
D_WEEK = 14  # EW mean |value - weekly expectation|
M_MID = 15  # medium EW mean of the value
S_SEAS = 16  # medium EW mean of (value - seasonal expectation)
ZQ = 17  # running high quantile of the surprise
RING_POS = 18  # next slot in the ring of recent values
TRIG_Z = 19  # the surprise that started the quiet period
HEADER = 20
DAY_BINS = 48  # half hours of the day
WEEK_BINS = 168  # hours of the week
DAY = HEADER  # DAY_BINS offsets from the slow mean, then DAY_BINS visit counts
WEEK = DAY + 2 * DAY_BINS  # WEEK_BINS offsets, then WEEK_BINS counts
SHAPE = 8  # points in a shape (the recent window compared with remembered ones)
N_PROTO = 64  # shapes remembered
RING = WEEK + 2 * WEEK_BINS  # the last SHAPE values
PROTO = RING + SHAPE  # N_PROTO shapes of SHAPE values
PROTO_N = PROTO + N_PROTO * SHAPE  # times each shape was matched
PROTO_T = PROTO_N + N_PROTO  # when each shape was last matched (point count)
# time-of-day surprise memory: per half-hour bin, the largest surprise of earlier days
# (decayed), the largest of the bin's current day, and that day's number
MEM_PREV = PROTO_T + N_PROTO
MEM_TODAY = MEM_PREV + DAY_BINS
MEM_DAY = MEM_TODAY + DAY_BINS
ENV_LO = MEM_DAY + DAY_BINS  # lowest value seen up to SHAPE points ago (drifts up)
ENV_HI = ENV_LO + 1  # highest (drifts down)
RUN_OUT = ENV_HI + 1  # points in a row beyond that envelope (+ above, - below)
REC_RATE = RUN_OUT + 1  # how often a value falls beyond the envelope (slow EW mean)
STATE_SIZE = REC_RATE + 1

# --- parameters (defaults in default_params) ---------------------------------------
P_A_SLOW = 0  # weight of a new point in the slow mean
P_A_FAST = 1  # ... in the local level
P_A_DEV = 2  # ... in the deviation scales
P_WARM = 3  # points scored 0 while the detector learns
P_QUIET = 4  # points held at 0 after an alert
P_ALERT = 5  # score that starts a quiet period
P_A_SEAS = 6  # weight of a new point in its seasonal bin
P_SEAS_MIN = 7  # visits before a seasonal bin is used
P_SEAS_GAIN = 8  # a seasonal model is used when its error < this x the slow mean's
P_A_NOISE = 9  # weight of a new step in the fast noise level
P_W_NOISE = 10  # weight of the noise-change surprise
P_CAP = 11  # a deviation scale learns from residuals of at most this x itself
P_Z0 = 12  # surprises below this score 0
P_ZC = 13  # scale of the squashing of the surprise above Z0
P_A_MID = 14  # weight of a new point in the medium means
P_W_SHIFT = 15  # weight of the sustained-shift surprises
P_Q = 16  # quantile of the surprise tracked per series
P_Q_ETA = 17  # its learning rate
P_Q_BETA = 18  # how much the surprise is divided by it (0: not at all)
P_Q_REF = 19  # the quantile's reference level
P_NOV_MODE = 20  # 1: a surprise in a familiar shape is explained away (0: off)
P_NOV_R = 21  # distance (in deviations) within which a shape is familiar
P_NOV_W = 22  # weight of the novelty surprise
P_NOV_CLIP = 23  # shape values are clipped to +- this many deviations
P_ESCALATE = 24  # in a quiet period, a surprise this x the one that started it alerts
P_MEM_R = 25  # a surprise within this x the usual one at this time of day is explained (0: off)
P_MEM_DECAY = 26  # the time-of-day memory keeps this share of itself per day
P_SEAS_W = 27  # weight of the seasonal surprise on its own (where the profile is used)
P_W_REC = 28  # weight of a run of values beyond the envelope of all seen (0: off)
P_A_ENV = 29  # how fast the envelope's edges drift back towards the slow mean
P_REC_CAP = 30  # points of a run beyond which its surprise grows no more
N_PARAMS = 31


def default_params() -> np.ndarray:
    """The default settings (tuned on 35 NAB series, one setting for all)."""
    p = np.zeros(N_PARAMS)
    p[P_A_SLOW] = 0.005
    p[P_A_FAST] = 0.2
    p[P_A_DEV] = 0.005
    p[P_WARM] = 250.0
    p[P_QUIET] = 200.0
    p[P_ALERT] = 0.5
    p[P_A_SEAS] = 0.02
    p[P_SEAS_MIN] = 3.0
    p[P_SEAS_GAIN] = 0.4
    p[P_A_NOISE] = 0.05
    p[P_W_NOISE] = 1.0
    p[P_CAP] = 10.0
    p[P_Z0] = 2.0
    p[P_ZC] = 3.0
    p[P_A_MID] = 0.05
    p[P_W_SHIFT] = 1.0
    p[P_Q] = 0.99
    p[P_Q_ETA] = 0.01
    p[P_Q_BETA] = 1.0
    p[P_Q_REF] = 3.0
    p[P_NOV_MODE] = 1.0
    p[P_NOV_R] = 3.0
    p[P_NOV_W] = 24.0
    p[P_NOV_CLIP] = 10.0
    p[P_ESCALATE] = 2.5
    p[P_MEM_R] = 1.5
    p[P_MEM_DECAY] = 0.8
    p[P_SEAS_W] = 0.6
    p[P_W_REC] = 2.5
    p[P_A_ENV] = 4e-5
    p[P_REC_CAP] = 20.0
    return p


@njit(cache=True, inline="always")
def _ew(old: float, new: float, a: float) -> float:
    return old + a * (new - old)


@njit(cache=True)
def _novelty(st: np.ndarray, p: np.ndarray, n: float, center: float, scale: float) -> float:
    """Distance (in deviations) from the recent shape to the nearest remembered one; then
    remember it (move the nearest towards it, or replace the least recently used)."""
    pos = int(st[RING_POS])
    clip = p[P_NOV_CLIP]
    best = np.inf
    best_k = 0
    lru = np.inf
    lru_k = 0
    for k in range(N_PROTO):
        base = PROTO + k * SHAPE
        d = 0.0
        for j in range(SHAPE):
            v = (st[RING + (pos + j) % SHAPE] - center) / scale
            v = min(max(v, -clip), clip)
            e = v - st[base + j]
            d += e * e
        if st[PROTO_N + k] == 0.0:
            d = np.inf
        if d < best:
            best = d
            best_k = k
        if st[PROTO_T + k] < lru:
            lru = st[PROTO_T + k]
            lru_k = k
    dist = math.sqrt(best / SHAPE) if best < np.inf else np.inf
    if dist <= p[P_NOV_R]:
        k = best_k
        c = st[PROTO_N + k]
        a = max(0.05, 1.0 / (c + 1.0))
    else:
        k = lru_k
        a = 1.0
        st[PROTO_N + k] = 0.0
    base = PROTO + k * SHAPE
    for j in range(SHAPE):
        v = (st[RING + (pos + j) % SHAPE] - center) / scale
        v = min(max(v, -clip), clip)
        st[base + j] += a * (v - st[base + j])
    st[PROTO_N + k] += 1.0
    st[PROTO_T + k] = n
    return dist


@njit(cache=True, inline="always")
def _mem_prev(st: np.ndarray, p: np.ndarray, b: int, day: float) -> float:
    """The time-of-day bin's memory of earlier days, rolled over to ``day``."""
    prev: float = st[MEM_PREV + b]
    if st[MEM_DAY + b] == day:
        return prev
    decay: float = p[P_MEM_DECAY] ** max(1.0, day - st[MEM_DAY + b])
    today: float = st[MEM_TODAY + b] * p[P_MEM_DECAY]
    return max(prev * decay, today)


@njit(cache=True)
def step(st: np.ndarray, p: np.ndarray, t: float, x: float) -> float:
    """Feed one point; return its score in [0, 1]."""
    # Time: keep the newest timestamp; a step back or a repeat is scored like any point
    # but does not move the clock. NaN timestamps count as "no time".
    if t == t:
        if st[SEEN_T] > 0.0:
            dt = t - st[LAST_T]
            if dt > 0.0:
                if st[DT] <= 0.0:
                    st[DT] = dt
                else:
                    # the spacing adapts slowly and ignores gaps (a gap of days is not a
                    # new sampling rate)
                    st[DT] = _ew(st[DT], min(dt, 4.0 * st[DT]), 0.01)
                st[LAST_T] = t
        else:
            st[LAST_T] = t
            st[SEEN_T] = 1.0
    if x != x or math.isinf(x):
        st[NAN] += 1.0
        return 0.0

    n = st[N]
    st[N] = n + 1.0
    if n == 0.0:
        st[M_SLOW] = x
        st[M_FAST] = x
        st[M_MID] = x
        st[PREV] = x
        st[ENV_LO] = x
        st[ENV_HI] = x
        return 0.0

    scale_floor = 1e-6 * (abs(st[M_SLOW]) + 1e-6)
    a_dev = p[P_A_DEV]
    # fast learning at the start: the mean of what was seen so far
    a_slow = max(p[P_A_SLOW], 1.0 / (n + 1.0))
    a_dev_n = max(a_dev, 1.0 / (n + 1.0))

    r_level = x - st[M_SLOW]
    r_innov = x - st[M_FAST]
    diff = x - st[PREV]

    z_level = abs(r_level) / (st[D_SLOW] + scale_floor)
    z_innov = abs(r_innov) / (st[D_INNOV] + scale_floor)

    # Seasonality: offsets from the slow mean by time of day and by hour of week.
    z_seas = np.inf
    seas_d = np.inf
    seas_r = 0.0
    has_t = st[SEEN_T] > 0.0
    bday = 0
    bweek = 0
    if has_t:
        tod = st[LAST_T] % 86400.0
        bday = int(tod / 86400.0 * DAY_BINS) % DAY_BINS
        tow = (st[LAST_T] + 3.0 * 86400.0) % (7.0 * 86400.0)
        bweek = int(tow / (7.0 * 86400.0) * WEEK_BINS) % WEEK_BINS
        # a seasonal model counts only where it explains the series better than the slow
        # mean does (its typical error is clearly smaller)
        if (
            st[DAY + DAY_BINS + bday] >= p[P_SEAS_MIN]
            and st[DT] < 86400.0 / 8.0
            and st[D_SEAS] < p[P_SEAS_GAIN] * st[D_SLOW]
        ):
            exp_d = st[M_SLOW] + st[DAY + bday]
            z_d = abs(x - exp_d) / (st[D_SEAS] + scale_floor)
            z_seas = z_d
            seas_d = st[D_SEAS]
            seas_r = x - exp_d
        if (
            st[WEEK + WEEK_BINS + bweek] >= p[P_SEAS_MIN]
            and st[DT] < 86400.0
            and st[D_WEEK] < p[P_SEAS_GAIN] * st[D_SLOW]
        ):
            exp_w = st[M_SLOW] + st[WEEK + bweek]
            z_w = abs(x - exp_w) / (st[D_WEEK] + scale_floor)
            if z_w < z_seas:
                z_seas = z_w
                seas_d = st[D_WEEK]
                seas_r = x - exp_w

    # Change in noise: fast vs slow mean |first difference|.
    z_noise = 0.0
    if n > 10.0:
        ratio = (st[D_DIFF_FAST] + scale_floor) / (st[D_DIFF_SLOW] + scale_floor)
        if ratio > 1.0:
            z_noise = p[P_W_NOISE] * math.log(ratio) * 3.0

    # Sustained shifts: a medium mean against the slow mean (and the seasonal residual's
    # medium mean), so a shift too small for one point shows over a few dozen.
    z_shift = p[P_W_SHIFT] * abs(st[M_MID] - st[M_SLOW]) / (st[D_SLOW] + scale_floor)
    if z_seas < np.inf:
        z_seas = max(z_seas, p[P_W_SHIFT] * abs(st[S_SEAS]) / (seas_d + scale_floor))
    z = max(z_innov, z_level, z_shift)
    z = min(z, z_seas)
    z_seen = z  # before any shape explains it: what the time-of-day memory keeps
    # The envelope of the values seen learns from the value leaving the ring of recent
    # ones (written SHAPE points ago, from the second point on).
    old_x = st[RING + int(st[RING_POS])]
    if n > SHAPE:
        st[ENV_LO] = min(old_x, _ew(st[ENV_LO], st[M_SLOW], p[P_A_ENV]))
        st[ENV_HI] = max(old_x, _ew(st[ENV_HI], st[M_SLOW], p[P_A_ENV]))
    st[RING + int(st[RING_POS])] = x
    st[RING_POS] = (st[RING_POS] + 1.0) % SHAPE
    # The recent shape (last SHAPE values, in deviations from the slow mean) against the
    # shapes remembered: a spike that recurs exactly (a machine-made one) is familiar.
    if p[P_NOV_MODE] != 0.0 and n >= SHAPE:
        nov = _novelty(st, p, n, st[M_SLOW], st[D_SLOW] + scale_floor)
        z_nov = p[P_NOV_W] * nov if nov < np.inf else 1e9
        z = min(z, z_nov)
    # Far from a usable seasonal profile is news in itself (a daily peak that does not
    # come), even where the value is ordinary for the series as a whole; the shapes do
    # not explain it, as they know nothing of the time of day.
    if z_seas < np.inf:
        z = max(z, p[P_SEAS_W] * z_seas)
        z_seen = max(z_seen, p[P_SEAS_W] * z_seas)
    z = max(z, z_noise)
    z_seen = max(z_seen, z_noise)
    z_raw = z
    # A surprise no larger than the ones usual at this time of day (on earlier days,
    # within half an hour) is explained: a nightly job's spike is routine.
    day_ok = has_t and st[DT] < 86400.0 / 8.0 and p[P_MEM_R] > 0.0
    if day_ok:
        day = math.floor(st[LAST_T] / 86400.0)
        prev = _mem_prev(st, p, bday, day)
        usual = max(
            prev,
            _mem_prev(st, p, (bday - 1) % DAY_BINS, day),
            _mem_prev(st, p, (bday + 1) % DAY_BINS, day),
        )
        if z <= p[P_MEM_R] * usual:
            z = min(z, p[P_Z0])
        if st[MEM_DAY + bday] != day:
            st[MEM_TODAY + bday] = 0.0
        st[MEM_PREV + bday] = prev
        st[MEM_DAY + bday] = day
        if n >= p[P_WARM]:
            st[MEM_TODAY + bday] = max(st[MEM_TODAY + bday], z_seen)
    # Values in a row beyond every value seen before (the envelope, a few points behind):
    # a level the series has not been at for long; no time of day makes that routine.
    # Runs count from twice the warm-up on (the first pass through a cycle breaks its
    # edges all the time), each point as surprising as such points are rare here (a
    # steady trend breaks an edge at almost every point), and the run's length is capped.
    if n > 2.0 * SHAPE:
        if x < st[ENV_LO]:
            st[RUN_OUT] = min(st[RUN_OUT], 0.0) - 1.0
        elif x > st[ENV_HI]:
            st[RUN_OUT] = max(st[RUN_OUT], 0.0) + 1.0
        else:
            st[RUN_OUT] = 0.0
        rate = st[REC_RATE]
        if n >= 2.0 * p[P_WARM]:
            bits = -math.log(max(rate, 1e-6)) / 6.0
            z_rec = p[P_W_REC] * (min(abs(st[RUN_OUT]), p[P_REC_CAP]) - 2.0) * bits
            z = max(z, z_rec)
            z_raw = max(z_raw, z_rec)
        beyond = 1.0 if st[RUN_OUT] != 0.0 else 0.0
        st[REC_RATE] = _ew(rate, beyond, max(p[P_A_DEV], 1.0 / (n + 1.0 - 2.0 * SHAPE)))

    # --- learn ---
    cap = p[P_CAP]
    st[D_SLOW] = _ew(
        st[D_SLOW], min(abs(r_level), cap * st[D_SLOW] + abs(r_level) * a_dev_n), a_dev_n
    )
    st[D_INNOV] = _ew(
        st[D_INNOV], min(abs(r_innov), cap * st[D_INNOV] + abs(r_innov) * a_dev_n), a_dev_n
    )
    st[M_SLOW] = _ew(st[M_SLOW], x, a_slow)
    st[M_FAST] = _ew(st[M_FAST], x, p[P_A_FAST])
    a_mid = max(p[P_A_MID], 1.0 / (n + 1.0))
    st[M_MID] = _ew(st[M_MID], x, a_mid)
    st[S_SEAS] = _ew(st[S_SEAS], seas_r, a_mid)
    st[D_DIFF_FAST] = _ew(st[D_DIFF_FAST], abs(diff), max(p[P_A_NOISE], 1.0 / (n + 1.0)))
    st[D_DIFF_SLOW] = _ew(st[D_DIFF_SLOW], abs(diff), a_dev_n)
    st[PREV] = x
    if has_t:
        off = x - st[M_SLOW]
        c = st[DAY + DAY_BINS + bday]
        if c >= p[P_SEAS_MIN]:
            rs = abs(x - (st[M_SLOW] + st[DAY + bday]))
            st[D_SEAS] = _ew(st[D_SEAS], rs, a_dev_n)
        st[DAY + bday] = _ew(st[DAY + bday], off, max(p[P_A_SEAS], 1.0 / (c + 1.0)))
        st[DAY + DAY_BINS + bday] = c + 1.0
        cw = st[WEEK + WEEK_BINS + bweek]
        if cw >= p[P_SEAS_MIN]:
            rw = abs(x - (st[M_SLOW] + st[WEEK + bweek]))
            st[D_WEEK] = _ew(st[D_WEEK], rw, a_dev_n)
        st[WEEK + bweek] = _ew(st[WEEK + bweek], off, max(p[P_A_SEAS], 1.0 / (cw + 1.0)))
        st[WEEK + WEEK_BINS + bweek] = cw + 1.0

    # --- score ---
    # divide by the series' own high quantile of surprise: a series that always jumps
    # must jump further than it usually does
    if st[ZQ] <= 0.0:
        st[ZQ] = p[P_Q_REF]
    q = st[ZQ]
    z = z / (q / p[P_Q_REF]) ** p[P_Q_BETA]
    if n >= p[P_WARM] * 0.5:
        up = 1.0 - p[P_Q] if z_raw <= q else -p[P_Q]
        st[ZQ] = q * math.exp(-p[P_Q_ETA] * up)
    # the surprise beyond Z0, squashed into [0, 1)
    score = 1.0 - math.exp(-max(0.0, z - p[P_Z0]) / p[P_ZC])

    if n < p[P_WARM]:
        return 0.0
    if st[QUIET] > 0.0:
        st[QUIET] -= 1.0
        # quiet, unless a much larger surprise arrives (a blip, then an outage: the
        # outage alerts too); 0 turns this off
        escalated = (
            score >= p[P_ALERT]
            and p[P_ESCALATE] > 0.0
            and st[TRIG_Z] > 0.0
            and z >= p[P_ESCALATE] * st[TRIG_Z]
        )
        if not escalated:
            return 0.0
    if score >= p[P_ALERT]:
        st[QUIET] = p[P_QUIET]
        st[TRIG_Z] = z
    return min(max(score, 0.0), 1.0)


@njit(cache=True)
def run(st: np.ndarray, p: np.ndarray, ts: np.ndarray, xs: np.ndarray, out: np.ndarray) -> None:
    """``step`` over arrays, writing each score to ``out``."""
    for i in range(len(xs)):
        out[i] = step(st, p, ts[i], xs[i])
