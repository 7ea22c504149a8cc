"""A self-contained HTML tear sheet: the PNG inlined plus the tables as text (offline, deterministic).

One file, no script, no external link: it opens from disk, in a mail or behind a firewall.
The same figures as the PNG (tearsheet_figures.py), as selectable, copyable tables.
"""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

from .tearsheet_figures import DRAWDOWN_HEADER, TearsheetFigures, drawdown_rows, format_value, table_rows
from .tearsheet import MONTHS

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:18px}h2{font-size:15px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f4f4f4}img{max-width:100%;border:1px solid #eee}.muted{color:#777}
"""


def render_html(figures: TearsheetFigures, title: str, png: bytes, provenance: dict) -> bytes:
    """UTF-8 bytes of the HTML tear sheet."""
    curves = list(figures.equity.columns)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        '<p class="muted">' + " · ".join(f"{_e(k)} <code>{_e(v)}</code>" for k, v in provenance.items()) + "</p>",
        "<h2>Performance (net of costs)</h2>",
        _table(["", *curves], table_rows(figures.metrics, curves)),
        "<h2>Worst drawdowns (strategy)</h2>",
        _table(list(DRAWDOWN_HEADER), drawdown_rows(figures.worst_drawdowns)),
        "<h2>Monthly returns (strategy)</h2>",
        _monthly(figures.monthly),
        "<h2>Yearly returns</h2>",
        _table(["year", *figures.yearly.columns],
               [[str(y), *(format_value(_num(v), "pct") for v in row)] for y, row in zip(figures.yearly.index, figures.yearly.to_numpy())]),
        "<h2>Charts</h2>",
        f'<img alt="tear sheet" src="data:image/png;base64,{base64.b64encode(png).decode()}">',
        "</body></html>",
        "",
    ]
    return "\n".join(parts).encode()


def _table(header: list, rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(text: str) -> str:
    if text.startswith(" "):  # an indented row label (the max drawdown's dates)
        return f'<td style="padding-left:24px">{_e(text.strip())}</td>'
    return f"<td>{_e(text)}</td>"


def _monthly(monthly: pd.DataFrame) -> str:
    head = "<th>year</th>" + "".join(f"<th>{m}</th>" for m in MONTHS)
    rows = []
    for year, values in zip(monthly.index, monthly.to_numpy("float64")):
        cells = "".join(_heat(v) for v in values)
        rows.append(f"<tr><td>{year}</td>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _heat(v: float) -> str:
    if not math.isfinite(v):
        return "<td></td>"
    strength = min(abs(v) / 0.3, 1.0)  # full colour at +-30% a month
    tint = int(round(255 - 130 * strength))
    colour = f"rgb({tint},255,{tint})" if v >= 0 else f"rgb(255,{tint},{tint})"
    return f'<td style="background:{colour}">{v:.1%}</td>'


def _num(v):
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _e(value) -> str:
    return html.escape(str(value))
