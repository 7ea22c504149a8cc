"""The coverage section of the data audit report: the share of days with a bar, per symbol and
month, drawn so that it stays readable, light and complete at any number of symbols.

It used to be one matplotlib figure 0.2 inch per symbol tall: at 5,000 symbols a PNG 100,000
pixels tall, most of the report's time and memory, that a browser shows badly. Now:

* the heat map is split into figures of at most `ROWS_PER_FIGURE` symbols, in the order of the
  symbols table; each figure is a PNG of one pixel per symbol and month (a few hundred bytes,
  its size bounded whatever the universe) that the page scales up without smoothing;
* every symbol is labelled beside its row in HTML text, not in pixels: a browser's find
  (Ctrl+F) finds its row, and the label links to the symbol's row in the symbols table;
* one header (the legend and the year axis) stays at the top of the window while the figures
  scroll by, so the months read the same at row 3,000 as at row 1.

The colour classes are the old heat map's: a single missing day in a month (below 97%) stands
out from a full month. Everything here is pure: same coverage in, same bytes out.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import itertools
import struct
import zlib
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, date_to_ms

# Lower bounds of the classes above the first (a share below 0.5 is class 0; exactly 1.0, a
# month with every day, is the last class). A month has at most 31 days: one missing day is
# below 97%, so it never shows as full.
COVERAGE_BOUNDS = (0.5, 0.8, 0.9, 1.0)
COVERAGE_LABELS = ("< 50%", "50-80%", "80-90%", "90-99%", "100%")
# matplotlib's RdYlGn at the five classes (what the old heat map drew), then "not listed yet"
COVERAGE_COLOURS = ("#a50026", "#f88c51", "#fffebe", "#87cb67", "#006837")
NOT_LISTED, NOT_LISTED_COLOUR, NOT_LISTED_LABEL = len(COVERAGE_COLOURS), "#dddddd", "not listed yet"
PALETTE = (*COVERAGE_COLOURS, NOT_LISTED_COLOUR)  # by class index

ROWS_PER_FIGURE = 100  # symbols per figure: ~1,200 CSS px, about one screen
ROW_PX = 12  # the height of a symbol's row, in CSS px: its label and its image row share it


# --------------------------------------------------------------------------- the numbers


def coverage_by_month(timestamps_by_symbol: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], as_of: dt.date) -> pd.DataFrame:
    """Share of days with a bar, symbols (rows, sorted) x months (`YYYY-MM` columns).

    A month counts the days from the symbol's first bar (or the month's first day) to `as_of`
    (or the month's last day); months wholly before the first bar are NaN. Days after the last
    bar count as missing: a stale or cut series shows. Bars after `as_of` are ignored.

    Takes a mapping or (symbol, timestamps) pairs, consumed one at a time and kept only as a
    row of monthly shares: the caller can read each symbol's bars as the pairs are asked for.
    """
    end = date_to_ms(as_of) // DAY_MS
    end_month = _month_of(np.array([end]))[0]
    pairs = timestamps_by_symbol.items() if isinstance(timestamps_by_symbol, Mapping) else timestamps_by_symbol
    rows: dict[str, tuple[int, np.ndarray]] = {}  # symbol -> (first month, shares from it to as_of's month)
    for symbol, timestamps in pairs:
        days = _days(timestamps, end)
        rows[symbol] = (end_month + 1, np.empty(0)) if not days.size else _shares(days, end, end_month)
    symbols = sorted(rows)
    first = min((rows[s][0] for s in symbols), default=end_month + 1)
    months = np.arange(first, end_month + 1)
    matrix = np.full((len(symbols), months.size), np.nan)
    for i, symbol in enumerate(symbols):
        start, shares = rows[symbol]
        matrix[i, start - first:] = shares
    return pd.DataFrame(matrix, index=symbols, columns=months.astype("datetime64[M]").astype(str).tolist())


def _month_of(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of days since the epoch."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype("int64")


def _days(timestamps: np.ndarray, end: int) -> np.ndarray:
    """The sorted distinct days (since the epoch) of `timestamps` up to day `end`."""
    days = np.sort(np.asarray(timestamps, dtype="int64") // DAY_MS, kind="stable")  # two sorted runs (bars, repairs): ~linear
    days = days[: np.searchsorted(days, end, side="right")]
    # a day both the staged bars and the repairs hold counts once (np.unique hashes: slower)
    return days[np.concatenate(([True], days[1:] != days[:-1]))] if days.size else days


def _shares(days: np.ndarray, end: int, end_month: int) -> tuple[int, np.ndarray]:
    """(first month, share of counted days with a bar per month to `end_month`) of sorted unique days."""
    first_month = _month_of(days[:1])[0]
    months = np.arange(first_month, end_month + 2)  # one past the end: the next month's first day
    month_starts = months.astype("datetime64[M]").astype("datetime64[D]").astype("int64")
    counted = np.minimum(month_starts[1:] - 1, end) - np.maximum(month_starts[:-1], days[0]) + 1
    have = np.bincount(_month_of(days) - first_month, minlength=counted.size)
    return int(first_month), have / counted


def coverage_classes(shares: np.ndarray) -> np.ndarray:
    """The colour class of each share: 0..4 by `COVERAGE_BOUNDS`, `NOT_LISTED` for NaN."""
    shares = np.asarray(shares, dtype="float64")
    classes = np.digitize(np.nan_to_num(shares, nan=0.0), COVERAGE_BOUNDS).astype("uint8")
    classes[np.isnan(shares)] = NOT_LISTED
    return classes


# --------------------------------------------------------------------------- the images


def indexed_png(pixels: np.ndarray, palette: Iterable[str]) -> bytes:
    """A PNG of palette indices (`pixels`: 2-D uint8, rows x columns) with `palette`'s `#rrggbb`
    colours: the few bytes a heat map of classes needs, with no metadata (deterministic)."""
    pixels = np.ascontiguousarray(pixels, dtype="uint8")
    height, width = pixels.shape
    plte = b"".join(bytes.fromhex(colour.lstrip("#")) for colour in palette)
    rows = np.hstack([np.zeros((height, 1), dtype="uint8"), pixels])  # filter byte 0 (none) per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit, palette colour type
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", plte) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- the HTML

COVERAGE_CSS = (
    ".cov-head{position:sticky;top:0;z-index:1;background:#fff;padding:4px 0;border-bottom:1px solid #ccc}"
    ".cov-legend{font-size:12px;margin-bottom:3px}.cov-legend span{margin-right:1.2em;white-space:nowrap}"
    ".cov-legend i{display:inline-block;width:1em;height:1em;vertical-align:-2px;margin-right:.3em;border:1px solid #999}"
    ".cov-row{display:grid;grid-template-columns:var(--cov-label) 1fr;column-gap:6px}"
    ".cov-years{display:flex;font-size:11px}.cov-years span{flex-basis:0;overflow:hidden;border-left:1px solid #666;padding-left:2px}"
    "figure.cov-fig{margin:0 0 4px}"
    f".cov-labels a{{display:block;height:{ROW_PX}px;line-height:{ROW_PX}px;font:10px monospace;color:#222;text-decoration:none;white-space:nowrap}}"
    ".cov-labels a:nth-child(even){background:#f2f2f2}.cov-labels a:hover{background:#ffe08a}"
    "figure.cov-fig img{width:100%;image-rendering:pixelated;image-rendering:crisp-edges;display:block}"
)


def symbol_anchor(symbol: str) -> str:
    """The id of a symbol's row in the symbols table (what a coverage label links to)."""
    return f"sym-{symbol}"


def coverage_html(coverage: pd.DataFrame) -> str:
    """The heat map as HTML: the sticky legend and year axis, then the figures of at most
    `ROWS_PER_FIGURE` symbols, each its symbols' labels beside its PNG (see module docstring)."""
    symbols = [str(s) for s in coverage.index]
    if not symbols or coverage.shape[1] == 0:
        return '<p class="none">no bars</p>'
    classes = coverage_classes(coverage.to_numpy(dtype="float64"))
    # every label column is as wide as the longest symbol, so the image columns of all the
    # figures and of the axis line up (a monospace font: one `ch` per character)
    label_width = f"{max(len(s) for s in symbols) + 1}ch"
    figures = [_figure(symbols, classes, start) for start in range(0, len(symbols), ROWS_PER_FIGURE)]
    return f'<div class="cov-map" style="--cov-label:{label_width}">{_head(list(coverage.columns))}{"".join(figures)}</div>'


def _figure(symbols: list[str], classes: np.ndarray, start: int) -> str:
    """The figure of the symbols from index `start`: their labels beside their rows' PNG."""
    chunk = symbols[start:start + ROWS_PER_FIGURE]
    png = indexed_png(classes[start:start + len(chunk)], PALETTE)
    labels = "".join(f'<a href="#{_esc(symbol_anchor(s))}">{_esc(s)}</a>' for s in chunk)
    alt = f"coverage of symbols {start + 1}-{start + len(chunk)} of {len(symbols)}: {chunk[0]} to {chunk[-1]}"
    return (f'<figure class="cov-fig cov-row"><div class="cov-labels">{labels}</div><img alt="{_esc(alt)}" '
            f'style="height:{len(chunk) * ROW_PX}px" src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>')


def _head(months: list[str]) -> str:
    """The legend and the year axis (one box per year, as wide as its months)."""
    swatches = zip(PALETTE, (*COVERAGE_LABELS, NOT_LISTED_LABEL))
    legend = "".join(f'<span><i style="background:{c}"></i>{_esc(label)}</span>' for c, label in swatches)
    years = [(year, len(list(group))) for year, group in itertools.groupby(m[:4] for m in months)]
    boxes = "".join(f'<span style="flex-grow:{n}" title="{y}">{y}</span>' for y, n in years)
    return f'<div class="cov-head"><div class="cov-legend">{legend}</div><div class="cov-row"><span></span><div class="cov-years">{boxes}</div></div></div>'


def _esc(value) -> str:
    return html.escape(str(value))
