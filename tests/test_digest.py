"""`quantlake digest`: the pure diff of two versions, the saved inputs, the command and DVC revisions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from repo_tools import dvc, git, repo_env

from quantlake.cli import main
from quantlake.contracts import ContractError
from quantlake.digest import (
    CANDIDATES,
    CATALOG,
    DIGEST_DIR,
    MIN_TRADE,
    NEW_LISTING_DAYS,
    PORTFOLIO,
    compare,
    compare_portfolios,
    digest_input,
    render,
    run_digest,
)
from quantlake.storage import atomic_write_json


def entry(status="ok", rows=100, quarantined=0, repaired=0, start="2024-01-01", end="2026-11-20"):
    return {"status": status, "rows": rows, "quarantined": quarantined, "repaired_days": repaired,
            "start_date": start, "end_date": end, "sha256": "x" * 64, "gaps": []}


def catalog(as_of, **symbols):
    return {"as_of": as_of, "schema_version": 1, "symbols": {f"SIM:{k}USDT": v for k, v in symbols.items()}}


def candidates(listed=None, **status):
    listed = listed or {}
    return {"candidates": [{"symbol": f"SIM:{k}USDT", "metrics": {"status": v, "listed_on": listed.get(k, "2020-01-01")}}
                           for k, v in status.items()]}


def portfolio(as_of, **weights):
    return {"as_of": as_of, "method": "hrp", "weights": {f"SIM:{k}USDT": w for k, w in weights.items()}, "run_id": "r" * 64}


YESTERDAY = digest_input(
    catalog("2026-11-20", BTC=entry(), ETH=entry(), WAVES=entry(), DOT=entry(), XVG=entry(quarantined=2), LUNA=entry("stale")),
    candidates(BTC="TRADING", ETH="TRADING", WAVES="TRADING", DOT="TRADING", XVG="TRADING", LUNA="HALT"),
    portfolio("2026-11-20", BTC=0.5, ETH=0.3, DOT=0.2),
)
TODAY = digest_input(
    catalog("2026-11-21", BTC=entry(rows=101), ETH=entry(rows=101, repaired=3), WAVES=entry("stale"), DOT=entry("degraded", rows=101),
            XVG=entry("toxic", quarantined=7), NEW=entry(rows=5, start="2026-11-17"), OLD=entry(rows=900, start="2024-01-01")),
    candidates(BTC="TRADING", ETH="TRADING", WAVES="HALT", DOT="TRADING", NEW="TRADING", LUNA="BREAK", OLD="TRADING",
               listed={"NEW": "2026-11-17"}),
    portfolio("2026-11-21", BTC=0.45, ETH=0.3, NEW=0.25),
)


def test_compare_names_every_change():
    diff = compare(YESTERDAY, TODAY)
    assert diff["as_of"] == "2026-11-21" and diff["previous_as_of"] == "2026-11-20"
    assert diff["new_listings"] == [{"symbol": "SIM:NEWUSDT", "start": "2026-11-17", "listed_on": "2026-11-17"}]
    assert diff["joined"] == [{"symbol": "SIM:OLDUSDT", "start": "2024-01-01"}]  # an old pair that entered the top N
    # the boundary: listed exactly NEW_LISTING_DAYS before as_of is new, a day earlier is not
    edge = dt.date(2026, 11, 21) - dt.timedelta(days=NEW_LISTING_DAYS)
    for listed, fresh in ((edge.isoformat(), True), ((edge - dt.timedelta(days=1)).isoformat(), False)):
        today = digest_input(catalog("2026-11-21", X=entry()), candidates(X="TRADING", listed={"X": listed}))
        d = compare({"as_of": "2026-11-20", "symbols": {}}, today)
        assert (d["new_listings"] != [], d["joined"] != []) == (fresh, not fresh), listed
    assert diff["left_candidates"] == ["SIM:XVGUSDT"]  # still in the catalog, no longer a candidate
    assert diff["exchange_changes"] == [
        {"symbol": "SIM:LUNAUSDT", "from": "HALT", "to": "BREAK"},  # delisted (no data left: not in the catalog)
        {"symbol": "SIM:WAVESUSDT", "from": "TRADING", "to": "HALT"},
    ]
    assert diff["status_changes"] == [
        {"symbol": "SIM:DOTUSDT", "from": "ok", "to": "degraded"},
        {"symbol": "SIM:LUNAUSDT", "from": "stale", "to": None},
        {"symbol": "SIM:WAVESUSDT", "from": "ok", "to": "stale"},
        {"symbol": "SIM:XVGUSDT", "from": "ok", "to": "toxic"},
    ]
    assert diff["quarantined"] == [{"symbol": "SIM:XVGUSDT", "added": 5}]
    assert diff["repaired"] == [{"symbol": "SIM:ETHUSDT", "added": 3}]
    assert diff["rows_added"] == 1 + 1 + 1 + 5 + 900
    p = diff["portfolio"]
    assert [(t["symbol"], round(t["trade"], 10)) for t in p["trades"]] == [("SIM:NEWUSDT", 0.25), ("SIM:DOTUSDT", -0.2), ("SIM:BTCUSDT", -0.05)]
    assert p["turnover"] == pytest.approx(0.5)


def test_trades_below_the_rounding_threshold_are_not_trades():
    before = {"as_of": "a", "weights": {"X": 0.5, "Y": 0.5}}
    tiny = compare_portfolios(before, {"as_of": "b", "weights": {"X": 0.5 + MIN_TRADE * 0.9, "Y": 0.5 - MIN_TRADE * 0.9}})
    assert tiny["trades"] == [] and tiny["turnover"] == 0
    small = compare_portfolios(before, {"as_of": "b", "weights": {"X": 0.5 + MIN_TRADE * 1.1, "Y": 0.5 - MIN_TRADE * 1.1}})
    assert [t["symbol"] for t in small["trades"]] == ["X", "Y"]
    assert compare_portfolios(before, None) is None
    first = compare_portfolios(None, {"as_of": "b", "weights": {"X": 1.0}})
    assert first["had_previous"] is False and first["turnover"] == pytest.approx(1.0)


def test_render_reads_like_a_digest():
    text = "\n".join(render(compare(YESTERDAY, TODAY), TODAY, {"tear sheet: artifacts/backtest/tearsheet.png": True,
                                                              "data report: artifacts/reports/data_audit.html": False}))
    assert text.splitlines()[0] == "digest: lakehouse as of 2026-11-21, compared with 2026-11-20"
    assert "new listings (1): SIM:NEWUSDT (listed 2026-11-17, data from 2026-11-17)" in text
    assert "new in the candidates (1): SIM:OLDUSDT (data from 2024-01-01)" in text
    assert "no longer among the candidates (still in the catalog) (1): SIM:XVGUSDT" in text
    assert "delistings and halts (exchange status) (2): SIM:LUNAUSDT HALT -> BREAK, SIM:WAVESUSDT TRADING -> HALT" in text
    assert "SIM:XVGUSDT ok -> toxic" in text and "bars quarantined (1): SIM:XVGUSDT +5" in text
    assert "repaired days (1): SIM:ETHUSDT +3" in text
    assert "portfolio as of 2026-11-21 (hrp): SIM:BTCUSDT 45.0%, SIM:ETHUSDT 30.0%, SIM:NEWUSDT 25.0%" in text
    assert "trades vs 2026-11-20: turnover 50.0%" in text
    assert "buy  SIM:NEWUSDT           +25.0%  (0.0% -> 25.0%)" in text and "sell SIM:DOTUSDT           -20.0%  (20.0% -> 0.0%)" in text
    assert "tear sheet: artifacts/backtest/tearsheet.png\n" in text + "\n"
    assert "data report: artifacts/reports/data_audit.html (not built yet: dvc repro)" in text
    assert "0.25" not in text and "0.45" not in text  # figures as people read them


def test_first_digest_shows_the_current_state():
    lines = render(compare(None, TODAY), TODAY)
    text = "\n".join(lines)
    assert "(no previous version to compare with)" in lines[0]
    assert "new listings: none" in text  # without a previous version nothing is "new"
    assert "SIM:LUNAUSDT BREAK" in text and "SIM:WAVESUSDT HALT" in text
    assert "bars quarantined (1): SIM:XVGUSDT +7" in text and "trades vs" not in text


def test_a_stale_portfolio_says_so():
    today = {**TODAY, "portfolio": {**TODAY["portfolio"], "as_of": "2026-11-20"}}
    text = "\n".join(render(compare(YESTERDAY, today), today))
    assert "portfolio as of 2026-11-20 (hrp) - NOT rebuilt for 2026-11-21 yet (dvc repro)" in text


def write_version(root, cat, cand, port):
    atomic_write_json(root / CATALOG, cat)
    atomic_write_json(root / CANDIDATES, cand)
    atomic_write_json(root / PORTFOLIO, port)


def no_revision(path, rev):
    raise FileNotFoundError(f"{path}@{rev}")


def test_run_digest_compares_with_the_input_saved_for_the_previous_as_of(tmp_path):
    write_version(tmp_path, catalog("2026-11-20", BTC=entry(), ETH=entry()), candidates(BTC="TRADING", ETH="TRADING"),
                  portfolio("2026-11-20", BTC=0.6, ETH=0.4))
    first = run_digest(tmp_path, reader=no_revision)
    assert "no previous version" in first[0]
    assert json.loads((tmp_path / DIGEST_DIR / "2026-11-20.json").read_text())["portfolio"]["weights"] == {"SIM:BTCUSDT": 0.6, "SIM:ETHUSDT": 0.4}
    write_version(tmp_path, catalog("2026-11-21", BTC=entry(rows=101), ETH=entry("degraded", rows=101)),
                  candidates(BTC="TRADING", ETH="TRADING"), portfolio("2026-11-21", BTC=0.7, ETH=0.3))
    second = run_digest(tmp_path, reader=no_revision)
    assert second[0] == "digest: lakehouse as of 2026-11-21, compared with 2026-11-20"
    assert any("SIM:ETHUSDT ok -> degraded" in line for line in second)
    assert any("buy  SIM:BTCUSDT" in line and "+10.0%" in line for line in second)
    # printing it again compares with the same previous version, not with itself
    assert run_digest(tmp_path, reader=no_revision) == second
    assert sorted(p.name for p in (tmp_path / DIGEST_DIR).iterdir()) == ["2026-11-20.json", "2026-11-21.json"]
    # --no-save leaves the saved inputs alone
    (tmp_path / DIGEST_DIR / "2026-11-21.json").unlink()
    run_digest(tmp_path, save=False, reader=no_revision)
    assert not (tmp_path / DIGEST_DIR / "2026-11-21.json").exists()


def test_run_digest_falls_back_to_head_only_for_an_earlier_version(tmp_path):
    write_version(tmp_path, catalog("2026-11-21", BTC=entry()), candidates(BTC="TRADING"), portfolio("2026-11-21", BTC=1.0))
    files = {str(CATALOG): catalog("2026-11-20", BTC=entry(), ETH=entry()), str(CANDIDATES): candidates(BTC="TRADING", ETH="TRADING")}
    reads = []

    def head(path, rev):
        reads.append((path, rev))
        if path not in files:
            raise FileNotFoundError(path)
        return json.dumps(files[path])

    lines = run_digest(tmp_path, save=False, reader=head)
    assert lines[0].endswith("compared with 2026-11-20") and reads[0] == (str(CATALOG), "HEAD")
    assert any("no longer in the catalog (1): SIM:ETHUSDT" in line for line in lines)
    files[str(CATALOG)] = catalog("2026-11-21", BTC=entry())  # HEAD is this very version: nothing to compare
    assert "no previous version" in run_digest(tmp_path, save=False, reader=head)[0]
    with pytest.raises(ContractError, match="--against nope"):
        run_digest(tmp_path, against="nope", reader=no_revision)


def test_run_digest_without_a_lakehouse_is_a_clear_error(tmp_path):
    with pytest.raises(ContractError, match="catalog.json: no lakehouse catalog yet"):
        run_digest(tmp_path)


@pytest.mark.integration
def test_digest_command_reads_the_previous_version_through_git_and_dvc(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = repo_env(repo)
    git(["init", "-q", "-b", "main"], repo, env)
    dvc(["init", "-q"], repo, env)
    write_version(repo, catalog("2026-11-20", BTC=entry()), candidates(BTC="TRADING"), portfolio("2026-11-20", BTC=1.0))
    for folder in ("data/lakehouse", "data/export", "artifacts/alpha"):
        dvc(["add", "-q", folder], repo, env)
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", "lakehouse 2026-11-20"], repo, env)
    write_version(repo, catalog("2026-11-21", BTC=entry(rows=101), SOL=entry(rows=3, start="2026-11-19")),
                  candidates(BTC="TRADING", SOL="TRADING", listed={"SOL": "2026-11-19"}), portfolio("2026-11-21", BTC=0.8, SOL=0.2))
    monkeypatch.chdir(repo)
    assert main(["digest", "--against", "HEAD", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "digest: lakehouse as of 2026-11-21, compared with 2026-11-20"
    assert "new listings (1): SIM:SOLUSDT (listed 2026-11-19, data from 2026-11-19)" in out
    assert "sell SIM:BTCUSDT           -20.0%  (100.0% -> 80.0%)" in out
    assert not (repo / DIGEST_DIR).exists()
    assert main(["digest"]) == 0  # no saved input: HEAD (an earlier as_of) is the previous version
    assert "compared with 2026-11-20" in capsys.readouterr().out
    assert (repo / DIGEST_DIR / "2026-11-21.json").exists()


def test_advance_ends_with_the_digest_unless_the_repro_fails(tmp_path, monkeypatch, capsys):
    import quantlake.cli as cli

    (tmp_path / "params.yaml").write_text("data:\n  source: sim\n  as_of: '2026-11-20'\n")
    write_version(tmp_path, catalog("2026-11-20", BTC=entry()), candidates(BTC="TRADING"), portfolio("2026-11-20", BTC=1.0))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANTLAKE_NOW", "2026-11-26T12:00:00Z")
    monkeypatch.setattr("quantlake.digest._dvc_reader", lambda root: no_revision)  # no git here
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert main(["advance", "--as-of", "2026-11-21"]) == 0
    assert calls == [["dvc", "repro", "report"]]
    assert capsys.readouterr().out.startswith("digest: lakehouse as of 2026-11-20")
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: 1)
    assert main(["advance", "--as-of", "2026-11-22"]) == 1
    assert "digest:" not in capsys.readouterr().out
    assert main(["advance", "--as-of", "2026-11-23", "--no-repro"]) == 0
    assert "digest:" not in capsys.readouterr().out
