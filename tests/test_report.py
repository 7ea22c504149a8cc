"""The data audit report: its sections say what happened on the sim, and it is reproducible."""

import base64
import os
import shutil
import datetime as dt
import re
import struct

import numpy as np
import pytest

from quantlake.contracts import DAY_MS, SymbolId, date_to_ms
from quantlake.data.audit import AuditConfig, run_audit
from quantlake.data.ingest import IngestConfig, ingest_symbols
from quantlake.data.repair import run_repair
from quantlake.data.report import coverage_by_month, render_html, write_audit_report
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


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


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

    pngs = [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert len(pngs) == 2
    width, height = png_size(pngs[0])  # the heat map: one 0.2 in row per symbol at 100 dpi, plus margins
    assert (width, height) == (1200, round((0.45 + 0.6 + 0.2 * len(SYMS)) * 100))


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


def test_the_page_escapes_what_it_shows():
    catalog = {"as_of": "2026-11-20", "symbols": {"X:A": {"status": "degraded", "rows": 1, "gaps": [], "data_quality_score": 0.5, "reasons": ["<script>alert(1)</script>"]}}}
    page = render_html(catalog, {}, {}, {}, {"symbols": {}}, [], {"coverage": b"png", "quality": b"png"})
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
