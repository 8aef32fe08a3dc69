"""A drift report as one self-contained HTML file (inline CSS and SVG, no scripts).

``render(report, reference, current)`` returns the page: a summary (rows on each side,
columns compared, the drifted share, the alerts, the multivariate checks), a table of
every column (test, statistic, p-value and adjusted p-value, threshold, drifted, missing
share change, unseen categories, out-of-range share, error) and one plot per column:
the reference against the current distribution - overlaid histograms on the
reference's own (decile) bins for numeric columns, drawn as densities so the unequal
widths read right, plus bars for current values below and above the reference's range;
side-by-side bars of category shares for categorical ones (the top categories, the
rest as "other").

Every string from the data (column names, categories, messages) is escaped. The page
reads no file and loads nothing: no fonts, no scripts, no external references.

Example::

    ref = Reference.fit(train_df)
    report = drift(ref, todays_df)
    Path("drift.html").write_text(render(report, ref, todays_df), encoding="utf-8")
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from opsloop.data.profile import CATEGORICAL, NUMERIC
from opsloop.monitoring import columns as cols
from opsloop.monitoring.checks import ColumnDrift, DriftReport
from opsloop.monitoring.columns import Floats
from opsloop.monitoring.reference import ColumnRef, Reference

TOP_CATEGORIES = 10
WIDTH = 360
HEIGHT = 150
PAD_LEFT = 8
PAD_BOTTOM = 34
REF_COLOR = "#4c78a8"
CUR_COLOR = "#f58518"

_CSS = (
    """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:24px 0 8px}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:right;vertical-align:top}th{background:#f4f4f4;position:sticky;top:0}
td.l,th.l{text-align:left}tr.drift td{background:#fde8e8}.err{color:#a00}
.bad{color:#c00;font-weight:600}.ok{color:#080}.muted{color:#777}
.summary td{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px;width:"""
    + str(WIDTH)
    + """px}
figcaption{font-size:13px;word-break:break-all}figure.drift{border-color:#c00}
.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
ul{margin:4px 0}code{font-size:12px}
"""
)


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        f = float(v)
        return format(f, fmt) if math.isfinite(f) else "-"
    return _e(v)


def _pct(v: Any, signed: bool = False) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return "-"
    return format(float(v), "+.1%" if signed else ".1%")


def _anchor(i: int) -> str:
    return f"c{i}"


# -- plots ------------------------------------------------------------------------------


def _svg_open(label: str) -> str:
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_e(label)}">'
    )


def _bars(labels: list[str], ref_share: list[float], cur_share: list[float], name: str) -> str:
    """Side-by-side bars of shares, one pair per label."""
    n = len(labels)
    top = max(max(ref_share, default=0.0), max(cur_share, default=0.0)) or 1.0
    plot_h = HEIGHT - PAD_BOTTOM - 4
    slot = (WIDTH - 2 * PAD_LEFT) / max(n, 1)
    bar = max(slot * 0.4, 0.5)
    parts = [_svg_open(f"category shares of {name}")]
    for i, (lab, r, c) in enumerate(zip(labels, ref_share, cur_share, strict=True)):
        x = PAD_LEFT + i * slot + slot * 0.1
        for j, (share, color) in enumerate(((r, REF_COLOR), (c, CUR_COLOR))):
            h = plot_h * share / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{4 + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{_e(lab)}: '
                f"{'reference' if j == 0 else 'current'} {share:.1%}</title></rect>"
            )
        short = lab if len(lab) <= 10 else lab[:9] + "…"
        cx = PAD_LEFT + (i + 0.5) * slot
        parts.append(
            f'<text x="{cx:.1f}" y="{HEIGHT - PAD_BOTTOM + 12}" font-size="9" '
            f'text-anchor="end" transform="rotate(-35 {cx:.1f} {HEIGHT - PAD_BOTTOM + 12})">'
            f"{_e(short)}</text>"
        )
    parts.append(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" '
        f'y2="{HEIGHT - PAD_BOTTOM}" stroke="#999"/></svg>'
    )
    return "".join(parts)


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def _categorical_plot(cref: ColumnRef, cur: cols.Column, name: str) -> str:
    ref_counts = dict(zip(cref.labels, cref.counts.tolist(), strict=True))
    cur_counts = dict(zip(cur.labels, cur.counts.tolist(), strict=True))
    return _category_bars(ref_counts, cur_counts, name)


def _category_bars(ref_counts: dict[str, int], cur_counts: dict[str, int], name: str) -> str:
    rt = sum(ref_counts.values()) or 1
    ct = sum(cur_counts.values()) or 1
    score: dict[str, float] = {}
    for lab, c in ref_counts.items():
        score[lab] = c / rt
    for lab, c in cur_counts.items():
        score[lab] = max(score.get(lab, 0.0), c / ct)
    ranked = sorted(score, key=lambda k: -score[k])
    top = ranked[:TOP_CATEGORIES]
    labels = list(top)
    rc = [ref_counts.get(k, 0) for k in top]
    cc = [cur_counts.get(k, 0) for k in top]
    if len(ranked) > TOP_CATEGORIES:
        labels.append(f"other ({len(ranked) - TOP_CATEGORIES})")
        rc.append(sum(ref_counts.values()) - sum(rc))
        cc.append(sum(cur_counts.values()) - sum(cc))
    return _bars(labels, _shares(rc), _shares(cc), name)


def _numeric_plot(cref: ColumnRef, cur: cols.Column, name: str) -> str:
    nr = cref.numeric
    if nr is None or cur.values is None or not len(nr.sorted):
        return ""
    x = cur.values
    x = x[np.isfinite(x)]
    if nr.discrete is not None and nr.discrete_counts is not None:
        ref_counts = {_num(v): int(c) for v, c in zip(nr.discrete, nr.discrete_counts, strict=True)}
        vals, counts = np.unique(x, return_counts=True)
        cur_counts = {_num(v): int(c) for v, c in zip(vals, counts, strict=True)}
        return _category_bars(ref_counts, cur_counts, name)
    lo, hi = float(nr.sorted[0]), float(nr.sorted[-1])
    edges = np.concatenate(([lo], nr.edges[(nr.edges > lo) & (nr.edges < hi)], [hi]))
    if len(edges) < 2 or hi <= lo:
        return ""
    # The reference's bins: (-inf, e0], (e0, e1], ... with the outer ones cut at its range.
    ref_c: Floats = np.diff(np.searchsorted(nr.sorted, edges, side="right")).astype(np.float64)
    ref_c[0] += float(np.searchsorted(nr.sorted, lo, side="right"))
    x.sort()
    cuts = np.searchsorted(x, edges, side="right")
    cur_c: Floats = np.diff(cuts).astype(np.float64)
    below = int(np.searchsorted(x, lo, side="left"))
    cur_c[0] += float(cuts[0] - below)  # values equal to the minimum
    above = len(x) - int(cuts[-1])
    nref = float(ref_c.sum()) or 1.0
    ncur = float(len(x)) or 1.0
    widths = np.diff(edges)
    ref_d = ref_c / nref / widths
    cur_d = cur_c / ncur / widths
    side = 18.0  # room for the below/above-range bars
    plot_w = WIDTH - 2 * PAD_LEFT - 2 * side
    plot_h = HEIGHT - PAD_BOTTOM - 4
    top = float(max(ref_d.max(), cur_d.max())) or 1.0
    parts = [_svg_open(f"distribution of {name}")]

    def xpos(v: float) -> float:
        return PAD_LEFT + side + plot_w * (v - lo) / (hi - lo)

    for dens, bin_c, total, color, who in (
        (ref_d, ref_c, nref, REF_COLOR, "reference"),
        (cur_d, cur_c, ncur, CUR_COLOR, "current"),
    ):
        for i in range(len(widths)):
            x0, x1 = xpos(float(edges[i])), xpos(float(edges[i + 1]))
            h = plot_h * float(dens[i]) / top
            parts.append(
                f'<rect x="{x0:.1f}" y="{4 + plot_h - h:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{color}" fill-opacity="0.5"><title>{who} '
                f"{float(edges[i]):.4g} to {float(edges[i + 1]):.4g}: "
                f"{float(bin_c[i]) / total:.1%}</title></rect>"
            )
    # Current values outside the reference's range: a bar at each end, its height twice
    # the share (capped at the plot's), labelled with the share.
    for share, x0, label in (
        (below / ncur, PAD_LEFT, "below the reference's minimum"),
        (above / ncur, WIDTH - PAD_LEFT - side + 2, "above the reference's maximum"),
    ):
        if share > 0:
            h = plot_h * min(share * 2, 1.0)
            parts.append(
                f'<rect x="{x0:.1f}" y="{4 + plot_h - h:.1f}" width="{side - 2:.1f}" '
                f'height="{h:.1f}" fill="{CUR_COLOR}" stroke="#c00"><title>current {share:.1%} '
                f"{label}</title></rect>"
                f'<text x="{x0 + (side - 2) / 2:.1f}" y="{max(4 + plot_h - h - 2, 10):.1f}" '
                f'font-size="8" text-anchor="middle" fill="#c00">{share:.0%}</text>'
            )
    base = HEIGHT - PAD_BOTTOM
    parts.append(
        f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_LEFT}" y1="{base}" y2="{base}" stroke="#999"/>'
        f'<text x="{xpos(lo):.1f}" y="{base + 12}" font-size="10">{lo:.4g}</text>'
        f'<text x="{xpos(hi):.1f}" y="{base + 12}" font-size="10" text-anchor="end">'
        f"{hi:.4g}</text>"
        f'<text x="{WIDTH / 2:.1f}" y="{base + 26}" font-size="10" text-anchor="middle" '
        f'fill="#777">density on the reference\'s decile bins</text></svg>'
    )
    return "".join(parts)


def _plot(cref: ColumnRef | None, current: object, entry: ColumnDrift) -> str:
    if cref is None or cref.error or entry.signals.get("removed") or entry.signals.get("added"):
        return ""
    try:
        cur = cols.read(current, entry.column)
        if cref.kind != cur.kind:
            return ""
        if cref.kind == NUMERIC:
            return _numeric_plot(cref, cur, entry.column)
        if cref.kind == CATEGORICAL:
            return _categorical_plot(cref, cur, entry.column)
    except Exception as exc:  # a plot never sinks the report
        return f'<p class="err">no plot: {_e(type(exc).__name__)}: {_e(exc)}</p>'
    return ""


# -- the page ---------------------------------------------------------------------------


def _summary(report: DriftReport, title: str, ref_label: str, cur_label: str) -> list[str]:
    verdict = (
        '<span class="bad">dataset drift</span>'
        if report.dataset_drift
        else '<span class="ok">no dataset drift</span>'
    )
    rows = [
        ("reference", f"{_e(ref_label)} ({report.reference_rows:,} rows)"),
        ("current", f"{_e(cur_label)} ({report.current_rows:,} rows)"),
        ("columns compared", f"{report.tested:,} tested of {len(report.columns):,}"),
        (
            "drifted",
            f"{len(report.drifted_columns):,} ({report.share_drifted:.1%} of tested) - {verdict}",
        ),
        ("p-value correction", _e(report.correction)),
    ]
    if report.added:
        rows.append(("added columns", _e(", ".join(report.added))))
    if report.removed:
        rows.append(("removed columns", _e(", ".join(report.removed))))
    out = [f"<h1>{_e(title)}</h1>", '<table class="summary">']
    out += [f'<tr><th class="l">{k}</th><td>{v}</td></tr>' for k, v in rows]
    out.append("</table>")
    out.append(f"<h2>Alerts ({len(report.alerts)})</h2>")
    if report.alerts:
        out.append("<ul>" + "".join(f"<li>{_e(a)}</li>" for a in report.alerts) + "</ul>")
    else:
        out.append('<p class="muted">none</p>')
    out.append("<h2>Multivariate checks</h2>")
    if report.multivariate:
        out.append(
            '<table><tr><th class="l">check</th><th class="l">drifted</th>'
            '<th class="l">result</th></tr>'
        )
        for kind, res in report.multivariate.items():
            drifted = res.get("drifted")
            flag = (
                '<span class="bad">yes</span>'
                if drifted
                else ("-" if drifted is None else '<span class="ok">no</span>')
            )
            if res.get("error"):
                detail = f'<span class="err">{_e(res["error"])}</span>'
            else:
                detail = _e(
                    res.get("summary")
                    or ", ".join(f"{k}={_num(v)}" for k, v in res.items() if k != "drifted")
                )
            out.append(
                f'<tr><td class="l">{_e(kind)}</td><td class="l">{flag}</td>'
                f'<td class="l">{detail}</td></tr>'
            )
        out.append("</table>")
    else:
        out.append('<p class="muted">not run</p>')
    return out


_HEAD = (
    "column",
    "kind",
    "test",
    "statistic",
    "p-value",
    "adjusted",
    "threshold",
    "drifted",
    "missing change",
    "unseen",
    "out of range",
    "error / note",
)


def _unseen(sig: dict[str, Any]) -> str:
    share = sig.get("unseen_share")
    if share is None:
        return "-"
    count = sig.get("unseen_count")
    first = sig.get("unseen_categories") or sig.get("unseen_values") or []
    tip = ", ".join(str(v) for v in first[:20])
    text = _pct(share) + (f" ({count:,})" if isinstance(count, int) else "")
    return f'<span title="{_e(tip)}">{text}</span>' if tip else text


def _row(i: int, e: ColumnDrift) -> str:
    sig = e.signals
    drifted = (
        '<span class="bad">yes</span>'
        if e.drifted
        else ("-" if e.drifted is None else '<span class="ok">no</span>')
    )
    msg = ""
    if e.error:
        msg = f'<span class="err">{_e(e.error)}</span>'
    elif e.note:
        msg = f'<span class="muted">{_e(e.note)}</span>'
    threshold = _num(e.threshold)
    if e.threshold is not None and e.threshold_on:
        threshold += (
            f' <span class="muted">({"p" if e.threshold_on == "p_value" else "stat"})</span>'
        )
    cells = [
        f'<td class="l"><a href="#{_anchor(i)}">{_e(e.column)}</a></td>',
        f'<td class="l">{_e(e.kind or "-")}</td>',
        f'<td class="l">{_e(e.test or "-")}</td>',
        f"<td>{_num(e.statistic)}</td>",
        f"<td>{_num(e.p_value, '.3g')}</td>",
        f"<td>{_num(e.p_value_adjusted, '.3g')}</td>",
        f"<td>{threshold}</td>",
        f"<td>{drifted}</td>",
        f"<td>{_pct(sig.get('missing_share_change'), signed=True)}</td>",
        f"<td>{_unseen(sig)}</td>",
        f"<td>{_pct(sig.get('out_of_range_share'))}</td>",
        f'<td class="l">{msg}</td>',
    ]
    cls = ' class="drift"' if e.drifted else ""
    return f"<tr{cls}>{''.join(cells)}</tr>"


def render(
    report: DriftReport,
    reference: Reference,
    current: object,
    *,
    title: str = "Drift report",
    reference_label: str | None = None,
    current_label: str = "current data",
) -> str:
    """The report as one HTML page (see the module docstring). ``reference`` is the
    fitted reference the report was computed with, ``current`` the current table."""
    ref_label = reference_label or str(reference.source.get("dataset") or "reference data")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
    ]
    parts += _summary(report, title, ref_label, cur_label=current_label)
    parts.append(f"<h2>Columns ({len(report.columns)})</h2>")
    parts.append(
        "<table><tr>"
        + "".join(
            f'<th class="{"l" if h in ("column", "kind", "test", "error / note") else ""}">{h}</th>'
            for h in _HEAD
        )
        + "</tr>"
    )
    entries = list(report.columns.values())
    parts += [_row(i, e) for i, e in enumerate(entries)]
    parts.append("</table>")
    parts.append(
        '<h2>Distributions</h2><p class="key">'
        f'<span style="background:{REF_COLOR}"></span>reference'
        f'<span style="background:{CUR_COLOR}"></span>current</p><div class="grid">'
    )
    for i, e in enumerate(entries):
        svg = _plot(reference.columns.get(e.column), current, e)
        if not svg:
            svg = f'<p class="muted">{_e(e.error or "no plot for this column")}</p>'
        cls = ' class="drift"' if e.drifted else ""
        stat = f" - {_e(e.test)} {_num(e.statistic)}" if e.test and e.statistic is not None else ""
        parts.append(
            f'<figure id="{_anchor(i)}"{cls}><figcaption><b>{_e(e.column)}</b>{stat}'
            f"{' <span class=bad>drifted</span>' if e.drifted else ''}</figcaption>{svg}</figure>"
        )
    parts.append("</div></body></html>\n")
    return "".join(parts)
