"""`quantlake show`: one aligned line per symbol of the lakehouse (workspace here; `--rev` in
tests/test_api.py's integration test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lake_tools import AS_OF, SPEC, build_lakehouse, make_bars

from quantlake.cli import main
from quantlake.show import format_table, show_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path) -> Path:
    build_lakehouse(tmp_path, "dir")
    return tmp_path


def table_lines(out: str) -> list[str]:
    lines = out.rstrip("\n").split("\n")
    assert lines[-1].startswith("lakehouse ")  # the summary line
    return lines[:-1]


def test_show_lists_every_symbol_with_status_days_rows_quarantined_and_gaps(repo, capsys):
    assert main(["show", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    lines = table_lines(out)
    assert lines[0].split() == ["symbol", "status", "first", "last", "rows", "quarantined", "gaps"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert list(rows) == sorted(SPEC)
    for sym, (status, first, last, _) in SPEC.items():
        rows_n = str(len(make_bars(sym)))
        quarantined = {"SIM:BBBUSDT": "3", "SIM:TOXUSDT": "40"}.get(sym, "0")
        gaps = "1" if sym == "SIM:BBBUSDT" else "0"
        assert rows[sym] == [status, first.isoformat(), last.isoformat(), rows_n, quarantined, gaps]
    assert out.rstrip().endswith(f"lakehouse workspace: as_of {AS_OF}, 4 of 4 symbols shown (1 ok, 1 stale, 1 degraded, 1 toxic)")


def test_show_filters_by_status_repeated_or_comma_separated(repo, capsys):
    assert main(["show", "--repo", str(repo), "--status", "ok,toxic"]) == 0
    assert [line.split()[0] for line in table_lines(capsys.readouterr().out)[1:]] == ["SIM:AAAUSDT", "SIM:TOXUSDT"]
    assert main(["show", "--repo", str(repo), "--status", "stale", "--status", "degraded"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in table_lines(out)[1:]] == ["SIM:BBBUSDT", "SIM:CCCUSDT"]
    assert "2 of 4 symbols shown (1 stale, 1 degraded)" in out


def test_show_rejects_an_unknown_status_and_a_missing_lakehouse(repo, tmp_path, capsys):
    assert main(["show", "--repo", str(repo), "--status", "ok,fine"]) == 2
    assert "quantlake show: error: unknown status ['fine']: choose from ok, stale, degraded, toxic" in capsys.readouterr().err
    assert main(["show", "--repo", str(tmp_path / "nowhere")]) == 2
    assert "no catalog.json at" in capsys.readouterr().err


def test_the_table_is_aligned_text_left_and_counts_right():
    catalog = {
        "as_of": "2026-01-20",
        "symbols": {
            "SIM:LONGNAMEUSDT": {"status": "degraded", "start_date": "2020-01-01", "end_date": "2026-01-20", "rows": 2211, "quarantined": 12, "gaps": [[1, 2]] * 3},
            "SIM:AUSDT": {"status": "toxic", "start_date": None, "end_date": None, "rows": 0, "quarantined": 7, "gaps": []},
        },
    }
    text = format_table(show_rows(catalog))
    lines = text.split("\n")
    assert lines == [
        "symbol            status    first       last        rows  quarantined  gaps",
        "SIM:AUSDT         toxic     -           -              0            7     0",
        "SIM:LONGNAMEUSDT  degraded  2020-01-01  2026-01-20  2211           12     3",
    ]
    assert show_rows(catalog, {"ok"}) == []


def test_the_console_script_prints_the_table(repo):
    script = Path(sys.executable).parent / "quantlake"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([str(script), "show", "--status", "ok"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().split("\n")
    assert [line.split()[:2] for line in lines[1:-1]] == [["SIM:AAAUSDT", "ok"]]
    assert "--rev" in subprocess.run([str(script), "show", "--help"], env=env, capture_output=True, text=True).stdout


def test_a_long_listing_piped_into_head_ends_quietly(tmp_path):
    """5,000 symbols overflow the pipe: the reader closing early is no error and no traceback."""
    import json

    lake = tmp_path / "data" / "lakehouse"
    lake.mkdir(parents=True)
    entry = {"status": "ok", "start_date": "2020-01-01", "end_date": "2026-01-20", "rows": 2212, "quarantined": 0, "gaps": []}
    symbols = {f"SIM:S{i:05d}USDT": entry for i in range(5000)}
    (lake / "catalog.json").write_text(json.dumps({"as_of": "2026-01-20", "symbols": symbols}))
    script = Path(sys.executable).parent / "quantlake"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(f"'{script}' show | head -2", shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.split("\n")[1].startswith("SIM:S00000USDT  ok")
    assert proc.stderr == ""
    full = subprocess.run([str(script), "show"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert full.returncode == 0 and len(full.stdout.strip().split("\n")) == 5002
