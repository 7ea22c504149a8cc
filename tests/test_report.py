"""The data audit report: its sections say what happened on the sim, and it is reproducible;
its coverage heat map shows every symbol, labelled, in figures of a bounded size."""

import base64
import datetime as dt
import html
import io
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from quantlake.contracts import DAY_MS, SymbolId, date_to_ms
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.repair import run_repair
from quantlake.data.report import render_html, write_audit_report
from quantlake.data.report_coverage import (COVERAGE_COLOURS, COVERAGE_LABELS, NOT_LISTED, NOT_LISTED_COLOUR, ROW_PX, ROWS_PER_FIGURE,
                                            coverage_by_month, coverage_classes, coverage_html)
from quantlake.data.staging import StagingStore
from quantlake.lakehouse import Layers
from quantlake.sources.sim import SimExchange
from quantlake.storage import read_json

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
AS_OF = dt.date(2026, 11, 20)
SYMS = ("SIM:ATOMUSDT", "SIM:BTCUSDT", "SIM:DOTUSDT", "SIM:WAVESUSDT", "SIM:XEMUSDT", "SIM:XVGUSDT")
SECTIONS = ("summary", "coverage", "quality", "outages", "repairs", "symbols", "quarantine")


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    """ingest -> repair -> audit on the sim, as the pipeline runs them."""
    layers = Layers(tmp_path_factory.mktemp("cycle"))
    sim = SimExchange(seed=7)
    store = StagingStore(layers.staging_bars, layers.quarantine)
    ingest_symbols([SymbolId.parse(s) for s in SYMS], sim, store, IngestConfig(as_of=AS_OF, start=dt.date(2024, 1, 1)), now=NOW, log=lambda m: None)
    run_repair(layers, sim, {"as_of": AS_OF.isoformat(), "workers": 2}, {}, log=lambda m: None)
    run_audit(layers, AuditConfig(as_of=AS_OF))
    return layers


def write(layers, out):
    return write_audit_report(layers.lakehouse, layers.staging_bars, layers.quarantine, layers.repairs, out)


def section(page: str, name: str) -> str:
    m = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert m, f"section {name} missing"
    return m.group(1)


def table_rows(html_part: str) -> list[list[str]]:
    """The cell texts of every body row of the tables in `html_part`."""
    out = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", html_part, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        if cells:
            out.append([re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip() for c in cells])
    return out


def row_of(html_part: str, first: str, n: int) -> list[str]:
    found = [r for r in table_rows(html_part) if r[0] == first]
    assert len(found) == 1, f"{first}: {found}"
    return found[0][:n]


def pngs(html_part: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html_part)]


def colours_of(png: bytes) -> np.ndarray:
    """The `#rrggbb` of every pixel, as a decoder other than ours sees them (rows x columns)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return np.array([[f"#{r:02x}{g:02x}{b:02x}" for r, g, b in row] for row in rgb])


def coverage_figures(page_or_part: str) -> list[dict]:
    """What a person sees of each coverage figure: its labels (text and link target), its
    image's displayed height, and its pixels' colours."""
    out = []
    for fig in re.findall(r'<figure class="cov-fig[^"]*">(.*?)</figure>', page_or_part, re.S):
        links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', fig)
        (png,) = pngs(fig)
        out.append({"labels": [text for _, text in links], "targets": [t for t, _ in links],
                    "height_px": int(re.search(r'style="height:(\d+)px"', fig).group(1)), "colours": colours_of(png)})
    return out


def axis_months(page_or_part: str) -> list[str]:
    """The months under the figures' columns, from the year axis (each year as wide as its
    months: the first year ends in December, the others start in January)."""
    years = [(int(y), int(n)) for n, y in re.findall(r'<span style="flex-grow:(\d+)" title="\d+">(\d+)</span>', page_or_part)]
    out = []
    for i, (year, n) in enumerate(years):
        first = 13 - n if i == 0 else 1
        out += [f"{year}-{m:02d}" for m in range(first, first + n)]
    return out


COLOUR = dict(zip(COVERAGE_LABELS, COVERAGE_COLOURS)) | {"not listed yet": NOT_LISTED_COLOUR}


def test_the_report_shows_every_section_with_what_the_cycle_did(cycle, tmp_path):
    page = write(cycle, tmp_path / "reports" / "data_audit.html").read_text()
    for name in SECTIONS:
        section(page, name)
    assert "as of 2026-11-20" in page
    repairs = section(page, "repairs")
    assert row_of(repairs, "SIM:DOTUSDT", 6) == ["SIM:DOTUSDT", "2025-03-01..2025-03-08", "healed", "8", "0", "0"]
    assert row_of(repairs, "SIM:ATOMUSDT", 8) == ["SIM:ATOMUSDT", "2024-06-10..2024-06-19", "unrepairable", "0", "10", "0", "1", "2026-11-20"]
    assert table_rows(section(page, "outages")) == [["SIM", "2024-11-11", "2024-11-11", "1", "6"]]  # all six were listed then
    symbols = section(page, "symbols")
    xem = row_of(symbols, "SIM:XEMUSDT", 10)
    assert xem[1] == "degraded" and xem[6] == "zero_volume_stall: 10 re-fetched: zero_volume_stall: 10" and xem[7] == "1 unrepairable"
    assert row_of(symbols, "SIM:XVGUSDT", 10)[1] == "degraded" and "contamination_unisolated" in row_of(symbols, "SIM:XVGUSDT", 10)[6]
    assert row_of(symbols, "SIM:WAVESUSDT", 2)[1] == "stale"
    assert row_of(symbols, "SIM:DOTUSDT", 10)[7] == "1 healed, 8 day(s) filled"
    # what the gates removed from the re-fetch is counted apart from what they removed at ingestion
    assert row_of(section(page, "quarantine"), "zero_volume_stall", 3) == ["zero_volume_stall", "10", "10"]

    assert len(pngs(section(page, "quality"))) == 1
    # the navigation line reaches every section
    assert re.findall(r'<nav>.*?</nav>', page, re.S) and all(f'href="#{name}"' in page.split("</nav>")[0] for name in SECTIONS)


def test_the_coverage_heat_map_labels_every_symbol_beside_its_row_in_the_right_colours(cycle, tmp_path):
    page = write(cycle, tmp_path / "r.html").read_text()
    coverage = section(page, "coverage")
    figures = coverage_figures(coverage)
    assert [s for f in figures for s in f["labels"]] == sorted(SYMS)  # every symbol once, in the table's order
    symbol_rows = re.findall(r'<tr id="([^"]+)" class="s-[a-z]+"><td>([^<]+)</td>', section(page, "symbols"))
    for fig in figures:  # each label links to its symbol's row of the symbols table
        assert [dict(symbol_rows)[t] for t in fig["targets"]] == fig["labels"]
    (fig,) = figures
    months = axis_months(coverage)
    assert months[0] == "2024-01" and months[-1] == "2026-11"
    assert fig["colours"].shape == (len(SYMS), len(months))  # one pixel per symbol and month
    assert fig["height_px"] == len(SYMS) * ROW_PX  # shown as tall as its labels
    cell = {(sym, m): fig["colours"][i, j] for i, sym in enumerate(fig["labels"]) for j, m in enumerate(months)}
    assert cell["SIM:ATOMUSDT", "2024-06"] == COLOUR["50-80%"]  # 10 unrepairable days of 30
    assert cell["SIM:DOTUSDT", "2025-03"] == COLOUR["100%"]  # its 8-day gap was healed
    assert {cell[s, "2024-11"] for s in SYMS} == {COLOUR["90-99%"]}  # the exchange-wide outage of 2024-11-11
    assert cell["SIM:BTCUSDT", "2024-10"] == COLOUR["100%"]
    wave = read_json(cycle.lakehouse / "catalog.json")["symbols"]["SIM:WAVESUSDT"]
    assert wave["status"] == "stale" and cell["SIM:WAVESUSDT", "2026-11"] == COLOUR["< 50%"]  # stale: no bar this month
    # the legend: every colour class with its label, and the grey of "not listed yet"
    legend = re.findall(r'<i style="background:(#[0-9a-f]{6})"></i>([^<]+)</span>', coverage)
    assert [(c, html.unescape(label)) for c, label in legend] == [(c, label) for label, c in COLOUR.items()]


def test_the_report_is_byte_identical_for_the_same_inputs(cycle, tmp_path):
    a = write(cycle, tmp_path / "a.html").read_bytes()
    b = write(cycle, tmp_path / "b.html").read_bytes()
    assert a == b


def test_the_report_needs_the_audit_to_have_run(cycle, tmp_path):
    with pytest.raises(FileNotFoundError, match="catalog.json"):
        write_audit_report(tmp_path / "nolake", cycle.staging_bars, cycle.quarantine, cycle.repairs, tmp_path / "r.html")


def days(first, last, skip=()):
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    ts = date_to_ms(a) + np.arange((b - a).days + 1, dtype="int64") * DAY_MS
    return ts[~np.isin(ts, [date_to_ms(dt.date.fromisoformat(s)) for s in skip])]


def test_coverage_is_the_share_of_days_with_a_bar_from_the_first_bar_to_as_of():
    cov = coverage_by_month(
        {
            "X:B": days("2024-02-10", "2024-03-31"),
            "X:A": days("2024-01-01", "2024-03-31", skip=("2024-01-05", "2024-01-06")),
            "X:C": days("2024-01-01", "2024-02-14"),  # stops: the rest of the span counts as missing
        },
        dt.date(2024, 3, 15),
    )
    assert list(cov.index) == ["X:A", "X:B", "X:C"] and list(cov.columns) == ["2024-01", "2024-02", "2024-03"]
    assert cov.loc["X:A"].tolist() == [29 / 31, 1.0, 1.0]
    assert np.isnan(cov.loc["X:B", "2024-01"]) and cov.loc["X:B", "2024-02"] == 1.0  # counted from its first bar
    assert cov.loc["X:C"].tolist() == [1.0, 14 / 29, 0.0]


def test_coverage_is_counted_once_for_a_day_both_layers_hold_and_not_after_as_of():
    staged, repaired = days("2024-01-01", "2024-01-31", skip=("2024-01-10",)), days("2024-01-09", "2024-01-12")
    cov = coverage_by_month(iter([("X:A", np.concatenate([staged, repaired, days("2024-02-01", "2024-02-03")])), ("X:E", np.empty(0, dtype="int64"))]),
                            dt.date(2024, 1, 31))
    assert list(cov.columns) == ["2024-01"] and cov.loc["X:A", "2024-01"] == 1.0  # 9-12 Jan held twice: counted once; February ignored
    assert np.isnan(cov.loc["X:E", "2024-01"])  # no bar at all: not listed


def test_coverage_classes_on_both_sides_of_each_bound():
    shares = np.array([0.0, 0.4999, 0.5, 0.7999, 0.8, 0.8999, 0.9, 30 / 31, np.nextafter(1.0, 0.0), 1.0, np.nan])
    assert coverage_classes(shares).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3, 4, NOT_LISTED]


def synthetic_coverage(n: int) -> pd.DataFrame:
    """`n` symbols over three months: every fifth not listed in January, every seventh with holes in February."""
    values = [[np.nan if i % 5 == 0 else 1.0, 0.6 if i % 7 == 0 else 1.0, 1.0] for i in range(n)]
    return pd.DataFrame(values, index=[f"X:S{i:05d}" for i in range(n)], columns=["2024-01", "2024-02", "2024-03"])


@pytest.mark.parametrize("n, sizes", [(1, [1]), (ROWS_PER_FIGURE, [ROWS_PER_FIGURE]), (ROWS_PER_FIGURE + 1, [ROWS_PER_FIGURE, 1]),
                                      (2 * ROWS_PER_FIGURE + 37, [ROWS_PER_FIGURE, ROWS_PER_FIGURE, 37])])
def test_the_heat_map_is_split_into_figures_of_at_most_rows_per_figure_symbols(n, sizes):
    coverage = synthetic_coverage(n)
    figures = coverage_figures(coverage_html(coverage))
    assert [len(f["labels"]) for f in figures] == sizes
    assert [s for f in figures for s in f["labels"]] == list(coverage.index)  # each symbol in exactly one figure
    expected = np.array([[COVERAGE_COLOURS[4] if v == 1.0 else COVERAGE_COLOURS[1] if v == 0.6 else NOT_LISTED_COLOUR for v in row] for row in coverage.to_numpy()])
    assert np.array_equal(np.vstack([f["colours"] for f in figures]), expected)  # each row beside its label
    assert [f["height_px"] for f in figures] == [k * ROW_PX for k in sizes]


def test_the_page_escapes_what_it_shows():
    catalog = {"as_of": "2026-11-20", "symbols": {"X:A": {"status": "degraded", "rows": 1, "gaps": [], "data_quality_score": 0.5, "reasons": ["<script>alert(1)</script>"]}}}
    coverage = coverage_by_month({"X:A": days("2026-11-01", "2026-11-20")}, dt.date(2026, 11, 20))
    page = render_html(catalog, {}, {}, {}, {"symbols": {}}, [], coverage, b"png")
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_outages_are_the_ones_the_audit_recorded(cycle, tmp_path):
    """With `repair.outage_min_symbols` above the default, the audit records no outage on this
    six-symbol cycle, and the report must say so (it used to recompute them with 2)."""
    layers = Layers(tmp_path / "data")
    shutil.copytree(cycle.root, layers.root, copy_function=os.link)
    run_repair(layers, SimExchange(seed=7), {"as_of": AS_OF.isoformat(), "workers": 2}, {"outage_min_symbols": 7}, log=lambda m: None)
    run_audit(layers, AuditConfig(as_of=AS_OF))
    assert read_json(layers.lakehouse / "audit.json")["outages"] == []
    page = write(layers, tmp_path / "r.html").read_text()
    assert table_rows(section(page, "outages")) == [["none"]]  # not the 2024-11-11 one a default of 2 finds
