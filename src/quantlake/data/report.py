"""The data audit report a person reads: one self-contained HTML file.

`write_audit_report` reads what the Data Cycle left behind (the lakehouse's `catalog.json` and
`audit.json`, the staged bars merged with the repairs, the quarantine files, the repair log) and
writes `artifacts/reports/data_audit.html` with:

* a summary (statuses, certified symbols, quality score statistics, repairs, outages);
* a coverage heat map: symbols x months, the share of days with a bar (grey before a symbol's
  first bar), so holes, stale and toxic tails show at a glance; in figures of a bounded number
  of symbols, each labelled in text (report_coverage.py);
* the distribution of the data quality scores;
* the exchange-wide outages the audit recorded (`audit.json`, found by `outages.py` during repair), reported once;
* every repaired or unrepaired gap (`repair.py`'s log);
* a per-symbol table: status, rows, first and last day, gaps, quarantined events by rule,
  repairs, quality score, the audit's reasons;
* the quarantined events by rule over all symbols.

The quality histogram is a PNG drawn with matplotlib's Agg canvas (no pyplot state), at a fixed
size and dpi and without the software/date metadata; the coverage figures are PNGs of one pixel
per symbol and month written directly. Both are embedded as base64 data URIs; nothing depends on
the clock, so the same inputs give a byte-identical file. The builders above the IO shell are pure.

The report reads every symbol's timestamps (tens of thousands of fragments at 5,000 symbols):
one column per fragment with `layer.read_columns`, symbol by symbol, each reduced at once to
its row of monthly shares, so its memory does not hold the universe's bars.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from ..contracts import SymbolId, parse_date
from ..lakehouse import AUDIT, CATALOG
from ..layer import SUFFIX, read_columns
from ..storage import atomic_write_bytes, read_json
from .repair import GAP_STATUSES, QUARANTINE_SUBDIR, load_repair_log
from .report_coverage import COVERAGE_CSS, ROWS_PER_FIGURE, coverage_by_month, coverage_html, symbol_anchor

DPI = 100
# the page's sections, in order: (id, title in the navigation line)
SECTIONS = (("summary", "summary"), ("coverage", "coverage"), ("quality", "quality scores"), ("outages", "outages"),
            ("repairs", "repairs"), ("symbols", "symbols"), ("quarantine", "quarantine"))
STATUS_COLOURS = {"ok": "#1a9850", "degraded": "#fdae61", "stale": "#74add1", "toxic": "#d73027"}


# --------------------------------------------------------------------------- pure builders


def quarantine_by_rule(rules: Iterable[str]) -> dict[str, int]:
    """Quarantine events per rule, sorted by rule (a rule with no event is absent)."""
    return {str(k): int(v) for k, v in sorted(Counter(rules).items())}


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


def _table(headers: list[str] | None, rows: list[list[str]], *, row_classes: list[str] | None = None, row_ids: list[str] | None = None) -> str:
    """An HTML table (no header row when `headers` is None); cells are already-escaped HTML."""
    head = f"<thead><tr>{''.join(f'<th>{_esc(h)}</th>' for h in headers)}</tr></thead>" if headers else ""
    body = []
    for i, r in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rid = f' id="{_esc(row_ids[i])}"' if row_ids else ""
        body.append(f"<tr{rid}{rc}>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>")
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
    coverage: pd.DataFrame,
    quality_png: bytes,
) -> str:
    """The report page from its inputs (pure): `coverage` is `coverage_by_month`'s frame,
    `quality_png` the quality score histogram."""
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
        "nav{margin-bottom:1em}" + COVERAGE_CSS
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>quantlake data audit, as of {_esc(as_of)}</title><style>{css}</style></head><body>",
        f"<h1>quantlake data audit, as of {_esc(as_of)}</h1>",
        "<nav>" + " &middot; ".join(f'<a href="#{name}">{title}</a>' for name, title in SECTIONS) + "</nav>",
        '<section id="summary"><h2>Summary</h2>', _table(None, summary_rows), "</section>",
        '<section id="coverage"><h2>Coverage</h2><p>Share of calendar days with a bar, per symbol and month '
        "(staged bars merged with repairs; grey: before the first bar). A symbol's name links to its row "
        f"in the <a href=\"#symbols\">symbols table</a>; {len(coverage)} symbols in figures of at most {ROWS_PER_FIGURE}.</p>",
        coverage_html(coverage), "</section>",
        '<section id="quality"><h2>Data quality scores</h2><p>coverage &times; cleanliness (see audit.py); '
        "toxic symbols score 0 and are counted apart.</p>",
        _img(quality_png, "quality score distribution"), "</section>",
        '<section id="outages"><h2>Exchange-wide outages</h2><p>Days missing on every symbol listed then: reported once, not repaired per symbol.</p>',
        _table(["exchange", "from", "to", "days", "symbols listed"], outage_rows), "</section>",
        '<section id="repairs"><h2>Repairs</h2>',
        f"<p>Repair log as of {_esc(repair_log.get('as_of') or 'never run')}.</p>",
        _table(["symbol", "gap", "status", "healed days", "missing days", "outage days", "attempts", "last tried", "last error"], repair_rows, row_classes=repair_classes),
        "</section>",
        '<section id="symbols"><h2>Symbols</h2>',
        _table(["symbol", "status", "rows", "start", "end", "gaps", "quarantined by rule", "repairs", "quality score", "reasons"], sym_rows,
               row_classes=sym_classes, row_ids=[symbol_anchor(sym) for sym in sorted(symbols)]),
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
        for path in sorted(folder.glob(f"*_1d{SUFFIX}")):
            counts = quarantine_by_rule(read_columns(path, ["rule"]).column("rule").to_pylist())
            if counts:
                out[str(SymbolId.from_filename(path.name))] = counts
    return out


def _merged_timestamps(catalog_path: Path, symbols: Iterable[str], bars_dir: Path, repairs_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(symbol, timestamps of its staged bars and repaired bars), one symbol at a time as the
    coverage asks for them; no bars for a symbol the staging layer does not hold.

    The coverage needs only the days the merged bars hold: their timestamps, one column read
    per fragment (`read_columns` skips pyarrow's dataset layer, which costs more than the read).
    """
    for sym in symbols:
        name = SymbolId.parse(sym, where=str(catalog_path)).filename
        tables = [folder / name for folder in (bars_dir, repairs_dir)] if (bars_dir / name).exists() else []
        parts = [read_columns(t, ["timestamp"]).column("timestamp").to_numpy() for t in tables if t.exists()]
        yield sym, np.concatenate(parts) if parts else np.empty(0, dtype="int64")


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
    symbols = catalog.get("symbols") or {}
    coverage = coverage_by_month(_merged_timestamps(lakehouse_dir / CATALOG, sorted(symbols), bars_dir, repairs_dir), as_of)
    quality_png = quality_hist_png({s: float(e.get("data_quality_score", 0.0)) for s, e in symbols.items()}, {s: e.get("status") for s, e in symbols.items()})
    page = render_html(
        catalog,
        audit,
        _read_quarantine_dir(Path(quarantine_dir)),
        _read_quarantine_dir(repairs_dir / QUARANTINE_SUBDIR),
        load_repair_log(repairs_dir),
        audit.get("outages", []),
        coverage,
        quality_png,
    )
    out_html = Path(out_html)
    atomic_write_bytes(out_html, page.encode("utf-8"))
    return out_html
