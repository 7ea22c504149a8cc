import datetime as dt
import json
from pathlib import Path

import pytest

from quantlake.contracts import ContractError, SymbolId
from quantlake.data.discovery import discover, load_scanner, scanner_files, scanner_from_file
from quantlake.sources.base import Market
from quantlake.sources.sim import SimExchange

ROOT = Path(__file__).resolve().parents[1]
AS_OF = dt.date(2026, 11, 20)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_base_inheritance_overrides_and_presets_are_not_run(tmp_path):
    write(tmp_path, "_base.yaml", "quote: [USDT]\nlimit: 5\nmin_listing_days: 30\n")
    write(tmp_path, "_mid.yaml", "base: _base\nlimit: 7\n")
    leaf = write(tmp_path, "leaf.yaml", "base: _mid\nname: leaf\nexclude_bases: [USDC]\n")
    cfg = scanner_from_file(leaf)
    assert (cfg.limit, cfg.min_listing_days, cfg.exclude_bases, cfg.name) == (7, 30, ["USDC"], "leaf")
    assert [p.name for p in scanner_files(tmp_path)] == ["leaf.yaml"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("limt: 5\n", "unknown key 'limt'"),
        ("limit: five\n", "key 'limit' has type str, expected int"),
        ("quote: USDT\n", "key 'quote' has type str, expected list"),
        ("descending: 1\n", "key 'descending' has type int, expected bool"),
        ("min_listing_days: true\n", "key 'min_listing_days' has type bool"),
        ("base: ../etc\n", "key 'base' must be the name of a preset"),
        ("sort_by: price\n", "key 'sort_by' must be one of"),
        ("statuses: [TRADING, GONE]\n", "unknown value(s) ['GONE']"),
        ("halt_after_days: 0\n", "'halt_after_days' must be >= 1"),
        ("min_traded_value_30d: -1\n", "'min_traded_value_30d' >= 0"),
    ],
)
def test_bad_scanner_files_name_the_file_and_the_key(tmp_path, text, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ContractError) as err:
        scanner_from_file(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_circular_and_missing_presets_are_errors(tmp_path):
    write(tmp_path, "_a.yaml", "base: _b\n")
    write(tmp_path, "_b.yaml", "base: _a\n")
    with pytest.raises(ContractError, match="circular"):
        load_scanner(write(tmp_path, "c.yaml", "base: _a\n"))
    with pytest.raises(ContractError, match="_nope.yaml"):
        load_scanner(write(tmp_path, "d.yaml", "base: _nope\n"))


def _m(sym, base, quote="USDT", status="TRADING", listed=dt.date(2020, 1, 1), value=5e6):
    return Market(SymbolId.parse(f"SIM:{sym}"), base, quote, status, listed_on=listed, last_trade_on=AS_OF, traded_value_30d=value)


def test_static_rules_only_every_status_and_attribution(tmp_path):
    """Discovery keeps every pair of the quote whatever its age, value or status (survivorship-free);
    the time-varying rules are the universe's (data/universe.py)."""
    write(tmp_path, "_base.yaml", "exclude_bases: [USDC]\nmin_listing_days: 30\nmin_traded_value_30d: 1000000\n")
    a = scanner_from_file(write(tmp_path, "a_top.yaml", "base: _base\nlimit: 2\n"))
    b = scanner_from_file(write(tmp_path, "b_gone.yaml", "base: _base\nstatuses: [HALT, BREAK]\nsort_by: symbol\ndescending: false\n"))
    markets = [
        _m("AAAUSDT", "AAA", value=9e6),
        _m("BBBUSDT", "BBB", value=8e6),
        _m("CCCUSDT", "CCC", value=7e6),
        _m("USDCUSDT", "USDC", value=9e9),  # stablecoin: excluded base
        _m("ETHBTC", "ETH", quote="BTC", value=9e9),  # other quote
        _m("NEWUSDT", "NEW", listed=AS_OF - dt.timedelta(days=5)),  # too young today: still a candidate
        _m("DUSTUSDT", "DUST", value=10.0),  # illiquid today: still a candidate
        _m("OLDUSDT", "OLD", status="BREAK"),  # delisted: a candidate, attributed to b_gone
    ]
    doc = discover([a, b], markets, as_of=AS_OF, source="sim")
    got = [(c["symbol"], c["scanner"], c["rank"]) for c in doc["candidates"]]
    assert got == [
        ("SIM:AAAUSDT", "a_top", 1), ("SIM:BBBUSDT", "a_top", 2), ("SIM:CCCUSDT", "a_top", 3),
        ("SIM:NEWUSDT", "a_top", 4), ("SIM:DUSTUSDT", "a_top", 6), ("SIM:OLDUSDT", "b_gone", 6),
    ]
    first = doc["candidates"][0]
    assert first["scanners"] == [{"scanner": "a_top", "rank": 1}, {"scanner": "b_gone", "rank": 1}]
    assert first["metrics"]["traded_value_30d"] == 9e6 and first["metrics"]["listing_days"] > 30
    assert set(first) >= {"symbol", "exchange", "base", "quote", "asset_type", "direction", "scanner", "rank", "metrics"}
    assert doc["as_of"] == "2026-11-20" and [s["name"] for s in doc["scanners"]] == ["a_top", "b_gone"]
    assert doc["scanners"][0]["halt_after_days"] == 3


def test_a_market_no_scanner_keeps_by_status_goes_to_the_first_admitting_scanner(tmp_path):
    a = scanner_from_file(write(tmp_path, "a.yaml", "statuses: [TRADING]\n"))
    doc = discover([a], [_m("OLDUSDT", "OLD", status="HALT")], as_of=AS_OF, source="sim")
    assert [(c["symbol"], c["scanner"], c["rank"]) for c in doc["candidates"]] == [("SIM:OLDUSDT", "a", 1)]


def test_repository_scanners_on_the_sim(tmp_path):
    scanners = [scanner_from_file(p) for p in scanner_files(ROOT / "configs" / "scanners")]
    doc = discover(scanners, SimExchange(7).list_markets(AS_OF), as_of=AS_OF, source="sim")
    syms = {c["symbol"] for c in doc["candidates"]}
    assert len(syms) >= 60
    assert not any(s.startswith(("SIM:USDC", "SIM:DAI", "SIM:TUSD", "SIM:FDUSD")) for s in syms)
    assert "SIM:ETHBTC" not in syms and "SIM:BTCEUR" not in syms
    # survivorship-bias free: delisted, halted, young and illiquid pairs are all ingested
    assert {"SIM:LUNAUSDT", "SIM:SRMUSDT", "SIM:WAVESUSDT", "SIM:NEWCOUSDT", "SIM:DUSTUSDT"} <= syms
    by = {c["symbol"]: c for c in doc["candidates"]}
    assert by["SIM:LUNAUSDT"]["scanner"] == "usdt_inactive" and by["SIM:BTCUSDT"]["scanner"] == "usdt_liquid"
    assert [s["scanner"] for s in by["SIM:BTCUSDT"]["scanners"]] == ["usdt_inactive", "usdt_liquid"]
    json.dumps(doc, allow_nan=False)
