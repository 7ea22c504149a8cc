"""The data audit report a person reads: one self-contained HTML file.

`write_audit_report` reads what the Data Cycle left behind (the lakehouse's `catalog.json` and
`audit.json`, the staged bars merged with the repairs, the quarantine files, the repair log) and
writes `artifacts/reports/data_audit.html` with:

* a summary (statuses, certified symbols, quality score statistics, repairs, outages);
* a coverage heat map: symbols x months, the share of days with a bar (grey before a symbol's
  first bar), so holes, stale and toxic tails show at a glance;
* the distribution of the data quality scores;
* the exchange-wide outages the audit recorded (`audit.json`, found by `outages.py` during repair), reported once;
* every repaired or unrepaired gap (`repair.py`'s log);
* a per-symbol table: status, rows, first and last day, gaps, quarantined events by rule,
  repairs, quality score, the audit's reasons;
* the quarantined events by rule over all symbols.

Figures are PNGs drawn with matplotlib's Agg canvas (no pyplot state), at a fixed size and dpi
and without the software/date metadata, embedded as base64 data URIs; nothing depends on the
clock, so the same inputs give a byte-identical file. The builders below the IO shell are pure.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..contracts import DAY_MS, SymbolId, date_to_ms, parse_date
from ..lakehouse import AUDIT, CATALOG, bars_layer
from ..storage import atomic_write_bytes, read_json
from .repair import GAP_STATUSES, QUARANTINE_SUBDIR, load_repair_log

DPI = 100
STATUS_COLOURS = {"ok": "#1a9850", "degraded": "#fdae61", "stale": "#74add1", "toxic": "#d73027"}


# --------------------------------------------------------------------------- pure builders


def coverage_by_month(timestamps_by_symbol: Mapping[str, np.ndarray], as_of: dt.date) -> pd.DataFrame:
    """Share of days with a bar, symbols (rows, sorted) x months (`YYYY-MM` columns).

    A month counts the days from the symbol's first bar (or the month's first day) to `as_of`
    (or the month's last day); months wholly before the first bar are NaN. Days after the last
    bar count as missing: a stale or cut series shows.
    """
    firsts = [int(ts.min()) // DAY_MS for ts in timestamps_by_symbol.values() if len(ts)]
    end = date_to_ms(as_of) // DAY_MS
    if not firsts:
        return pd.DataFrame(index=sorted(timestamps_by_symbol), dtype="float64")
    start = min(firsts)
    days = np.arange(start, end + 1)
    months = pd.to_datetime(days * DAY_MS, unit="ms").strftime("%Y-%m").to_numpy()
    labels, month_idx = np.unique(months, return_inverse=True)
    rows = {}
    for sym in sorted(timestamps_by_symbol):
        ts = np.asarray(timestamps_by_symbol[sym], dtype="int64") // DAY_MS
        have = np.isin(days, ts)
        counted = days >= (ts.min() if len(ts) else end + 1)
        n = np.bincount(month_idx, weights=counted, minlength=len(labels))
        k = np.bincount(month_idx, weights=have & counted, minlength=len(labels))
        with np.errstate(invalid="ignore", divide="ignore"):
            rows[sym] = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(labels))


def quarantine_by_rule(quarantine: pd.DataFrame) -> dict[str, int]:
    """Quarantine events per rule (a rule absent from the frame is absent from the result)."""
    if quarantine is None or quarantine.empty:
        return {}
    return {str(k): int(v) for k, v in sorted(Counter(quarantine["rule"].astype(str)).items())}


def repair_text(log_entry: dict | None) -> str:
    """One symbol's repairs in words: gaps per status (in `GAP_STATUSES` order), healed days, drift."""
    gaps = (log_entry or {}).get("gaps") or []
    counts = Counter(rec["status"] for rec in gaps)
    parts = [f"{counts[s]} {s}" for s in GAP_STATUSES if counts[s]]
    filled = sum(int(rec.get("filled_days", 0)) for rec in gaps)
    if filled:
        parts.append(f"{filled} day(s) filled")
    drift = (log_entry or {}).get("drift") or []
    if drift:
        parts.append(f"drift on {len(drift)} day(s)")
    return ", ".join(parts)


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: list[str] | None, rows: list[list[str]], *, row_classes: list[str] | None = None) -> str:
    """An HTML table (no header row when `headers` is None); cells are already-escaped HTML."""
    head = f"<thead><tr>{''.join(f'<th>{_esc(h)}</th>' for h in headers)}</tr></thead>" if headers else ""
    body = []
    for i, r in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{rc}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(headers or [1])}" class="none">none</td></tr>')
    return f'<table>{head}<tbody>{"".join(body)}</tbody></table>'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _gap_list(gaps: list) -> str:
    return "<br>".join(f"{_esc(a)}..{_esc(b)}" for a, b in gaps) or "&ndash;"


def render_html(
    catalog: dict,
    audit: dict,
    quarantine: Mapping[str, dict[str, int]],
    repair_quarantine: Mapping[str, dict[str, int]],
    repair_log: dict,
    outages: list[dict],
    figures: Mapping[str, bytes],
) -> str:
    """The report page from its inputs (pure; `figures` holds `coverage` and `quality` PNGs)."""
    symbols = catalog.get("symbols") or {}
    log_symbols = repair_log.get("symbols") or {}
    as_of = catalog.get("as_of")
    all_gaps = [(s, r) for s in sorted(log_symbols) for r in log_symbols[s].get("gaps") or []]
    repair_totals = Counter(r["status"] for _, r in all_gaps)
    qs = audit.get("quality_score") or {}

    summary_rows = [
        ["as of", _esc(as_of)],
        ["symbols", _esc(audit.get("symbols", len(symbols)))],
        ["certified", _esc(audit.get("certified"))],
        ["by status", ", ".join(f"{_esc(k)}: {_esc(v)}" for k, v in (audit.get("by_status") or {}).items())],
        ["quarantined events", _esc(audit.get("quarantined_events"))],
        ["gaps longer than the threshold", _esc(audit.get("gaps"))],
        ["quality score", ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in qs.items())],
        ["repaired gaps", ", ".join(f"{_esc(k)}: {_esc(v)}" for k, v in sorted(repair_totals.items())) or "none"],
        ["exchange-wide outages", _esc(len(outages))],
        ["missing candidates", _esc(", ".join(audit.get("missing_candidates") or []) or "none")],
    ]

    outage_rows = [[_esc(o.get("exchange")), _esc(o["from"]), _esc(o["to"]), _esc(o["days"]), _esc(o["symbols"])] for o in outages]

    repair_rows, repair_classes = [], []
    for sym, r in all_gaps:
        repair_rows.append(
            [_esc(sym), f"{_esc(r['from'])}..{_esc(r['to'])}", _esc(r["status"]), _esc(r.get("filled_days")), _esc(r.get("missing_days")),
             _esc(r.get("outage_days")), _esc(r.get("attempts")), _esc(r.get("last_tried") or "never"), _esc(r.get("last_error") or "")]
        )
        repair_classes.append(f"r-{r['status']}")

    sym_rows, sym_classes = [], []
    for sym in sorted(symbols):
        e = symbols[sym]
        q = quarantine.get(sym, {})
        rq = repair_quarantine.get(sym, {})
        q_cell = "<br>".join(f"{_esc(k)}: {_esc(v)}" for k, v in q.items()) or "&ndash;"
        if rq:
            q_cell += "<br><i>re-fetched:</i> " + ", ".join(f"{_esc(k)}: {_esc(v)}" for k, v in rq.items())
        r_cell = _esc(repair_text(log_symbols.get(sym))) or "&ndash;"
        sym_rows.append(
            [_esc(sym), _esc(e.get("status")), _esc(e.get("rows")), _esc(e.get("start_date")), _esc(e.get("end_date")), _gap_list(e.get("gaps") or []),
             q_cell, r_cell, _esc(f"{float(e.get('data_quality_score', 0.0)):.4f}"), "<br>".join(_esc(x) for x in e.get("reasons") or []) or "&ndash;"]
        )
        sym_classes.append(f"s-{e.get('status')}")

    by_rule: Counter = Counter()
    for counts in quarantine.values():
        by_rule.update(counts)
    re_rule: Counter = Counter()
    for counts in repair_quarantine.values():
        re_rule.update(counts)
    rule_rows = [[_esc(k), _esc(by_rule.get(k, 0)), _esc(re_rule.get(k, 0))] for k in sorted(set(by_rule) | set(re_rule))]

    css = (
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:left;vertical-align:top;white-space:nowrap}"
        "td:last-child{white-space:normal}"
        "th{background:#f0f0f0}td.none{color:#888}img{max-width:100%}"
        + "".join(f".s-{k} td:nth-child(2){{background:{v};color:#fff}}" for k, v in STATUS_COLOURS.items())
        + ".r-healed td:nth-child(3){background:#1a9850;color:#fff}.r-unrepairable td:nth-child(3){background:#d73027;color:#fff}"
        ".r-partial td:nth-child(3),.r-pending td:nth-child(3){background:#fdae61}.r-outage td:nth-child(3){background:#74add1;color:#fff}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>quantlake data audit, as of {_esc(as_of)}</title><style>{css}</style></head><body>",
        f"<h1>quantlake data audit, as of {_esc(as_of)}</h1>",
        '<section id="summary"><h2>Summary</h2>', _table(None, summary_rows), "</section>",
        '<section id="coverage"><h2>Coverage</h2><p>Share of calendar days with a bar, per symbol and month '
        "(staged bars merged with repairs; grey: before the first bar).</p>",
        _img(figures["coverage"], "coverage heat map"), "</section>",
        '<section id="quality"><h2>Data quality scores</h2><p>coverage &times; cleanliness (see audit.py); '
        "toxic symbols score 0 and are counted apart.</p>",
        _img(figures["quality"], "quality score distribution"), "</section>",
        '<section id="outages"><h2>Exchange-wide outages</h2><p>Days missing on every symbol listed then: reported once, not repaired per symbol.</p>',
        _table(["exchange", "from", "to", "days", "symbols listed"], outage_rows), "</section>",
        '<section id="repairs"><h2>Repairs</h2>',
        f"<p>Repair log as of {_esc(repair_log.get('as_of') or 'never run')}.</p>",
        _table(["symbol", "gap", "status", "healed days", "missing days", "outage days", "attempts", "last tried", "last error"], repair_rows, row_classes=repair_classes),
        "</section>",
        '<section id="symbols"><h2>Symbols</h2>',
        _table(["symbol", "status", "rows", "start", "end", "gaps", "quarantined by rule", "repairs", "quality score", "reasons"], sym_rows, row_classes=sym_classes),
        "</section>",
        '<section id="quarantine"><h2>Quarantined events by rule</h2>',
        _table(["rule", "staging", "re-fetched (repairs)"], rule_rows), "</section>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- figures


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# Coverage classes: a single missing day in a month must stand out from a full month.
# (A month has at most 31 days, so one missing day is below 97%.)
COVERAGE_BOUNDS = (0.0, 0.5, 0.8, 0.9, 0.9999, 1.0001)
COVERAGE_LABELS = ("< 50%", "50-80%", "80-90%", "90-99%", "100%")


def coverage_heatmap_png(coverage: pd.DataFrame) -> bytes:
    """The coverage matrix as a heat map (dark green: every day; red: few; grey: not listed yet)."""
    import matplotlib as mpl
    from matplotlib.colors import BoundaryNorm

    n_sym, n_mon = coverage.shape
    row_in, top_in, bottom_in, left_in, right_in, width_in = 0.2, 0.45, 0.6, 1.5, 1.2, 12.0
    height_in = top_in + bottom_in + row_in * max(n_sym, 1)
    fig = _figure(width_in, height_in)
    box = (left_in / width_in, bottom_in / height_in, 1 - (left_in + right_in) / width_in, row_in * max(n_sym, 1) / height_in)
    ax = fig.add_axes(box)
    cmap = mpl.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    norm = BoundaryNorm(COVERAGE_BOUNDS, cmap.N)
    data = np.ma.masked_invalid(coverage.to_numpy(dtype="float64")) if n_sym and n_mon else np.ma.masked_all((1, 1))
    im = ax.imshow(data, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_yticks(range(n_sym), [str(s) for s in coverage.index], fontsize=8)
    years = [(i, c[:4]) for i, c in enumerate(coverage.columns) if c.endswith("-01") or i == 0]
    ax.set_xticks([i for i, _ in years], [y for _, y in years], fontsize=8)
    ax.set_xticks(range(n_mon), minor=True)
    ax.tick_params(axis="x", which="minor", length=2)
    ax.set_xlabel("month", fontsize=9)
    ax.set_title("share of days with a bar, per symbol and month", fontsize=10)
    cax = fig.add_axes((box[0] + box[2] + 0.15 / width_in, box[1], 0.15 / width_in, box[3]))
    centres = [(a + b) / 2 for a, b in zip(COVERAGE_BOUNDS[:-1], COVERAGE_BOUNDS[1:])]
    bar = fig.colorbar(im, cax=cax, ticks=centres)
    bar.ax.set_yticklabels(COVERAGE_LABELS, fontsize=7)
    return _png(fig)


def quality_hist_png(scores: Mapping[str, float], statuses: Mapping[str, str]) -> bytes:
    """Histogram of the non-toxic symbols' quality scores (range zoomed to where they lie)."""
    vals = np.array([scores[s] for s in sorted(scores) if statuses.get(s) != "toxic"], dtype="float64")
    toxic = sum(1 for s in scores if statuses.get(s) == "toxic")
    lo = float(np.floor(min(vals.min(), 0.95) * 20) / 20) if len(vals) else 0.0
    fig = _figure(8.0, 3.2)
    ax = fig.add_axes((0.09, 0.17, 0.88, 0.7))
    ax.hist(vals, bins=np.linspace(lo, 1.0, 21), color="#4575b4", edgecolor="white")
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("data quality score")
    ax.set_ylabel("symbols")
    ax.set_title(f"{len(vals)} scored symbols; {toxic} toxic (score 0) not shown", fontsize=10)
    return _png(fig)


# --------------------------------------------------------------------------- IO shell


def _read_quarantine_dir(folder: Path) -> dict[str, dict[str, int]]:
    out = {}
    if folder.exists():
        for path in sorted(folder.glob("*_1d.parquet")):
            counts = quarantine_by_rule(pq.read_table(path, columns=["rule"]).to_pandas())
            if counts:
                out[str(SymbolId.from_filename(path.name))] = counts
    return out


def write_audit_report(lakehouse_dir: Path, bars_dir: Path, quarantine_dir: Path, repairs_dir: Path, out_html: Path) -> Path:
    """Write the data audit report (see module docstring) atomically to `out_html`.

    Reads `catalog.json` and `audit.json` from `lakehouse_dir` (the audit must have run), the
    staged bars in `bars_dir` merged with `repairs_dir`, the quarantine files of
    `quarantine_dir` and `repairs_dir/quarantine`, and the repair log. The exchange-wide
    outages are the ones the audit recorded (`audit.json`), never recomputed here.
    """
    lakehouse_dir, bars_dir, repairs_dir = Path(lakehouse_dir), Path(bars_dir), Path(repairs_dir)
    for name in (CATALOG, AUDIT):
        if not (lakehouse_dir / name).exists():
            raise FileNotFoundError(f"{lakehouse_dir / name} is missing: run `quantlake audit` before the report")
    catalog = read_json(lakehouse_dir / CATALOG)
    audit = read_json(lakehouse_dir / AUDIT)
    as_of = parse_date(catalog.get("as_of"), field=f"{lakehouse_dir / CATALOG}: as_of")
    timestamps = {}
    staged_layer, repairs_layer = bars_layer(bars_dir), bars_layer(repairs_dir)
    for sym in sorted(catalog.get("symbols") or {}):
        sid = SymbolId.parse(sym, where=str(lakehouse_dir / CATALOG))
        if not (bars_dir / sid.filename).exists():
            timestamps[sym] = np.empty(0, dtype="int64")
            continue
        # The coverage needs only the days the merged bars hold (staged, plus repaired days):
        # their timestamps, not six columns made into a sorted frame per symbol.
        parts = [staged_layer.read_table(sid.filename, columns=["timestamp"])]
        if (repairs_dir / sid.filename).exists():
            parts.append(repairs_layer.read_table(sid.filename, columns=["timestamp"]))
        timestamps[sym] = np.concatenate([t.column("timestamp").to_numpy() for t in parts if t is not None])
    symbols = catalog.get("symbols") or {}
    figures = {
        "coverage": coverage_heatmap_png(coverage_by_month(timestamps, as_of)),
        "quality": quality_hist_png({s: float(e.get("data_quality_score", 0.0)) for s, e in symbols.items()}, {s: e.get("status") for s, e in symbols.items()}),
    }
    page = render_html(
        catalog,
        audit,
        _read_quarantine_dir(Path(quarantine_dir)),
        _read_quarantine_dir(repairs_dir / QUARANTINE_SUBDIR),
        load_repair_log(repairs_dir),
        audit.get("outages", []),
        figures,
    )
    out_html = Path(out_html)
    atomic_write_bytes(out_html, page.encode("utf-8"))
    return out_html
