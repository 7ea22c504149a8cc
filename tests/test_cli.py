import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantlake.cli import main, set_as_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "configs").mkdir()
    import shutil

    shutil.copytree(ROOT / "configs" / "scanners", tmp_path / "configs" / "scanners")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUANTLAKE_NOW", "2026-11-26T12:00:00Z")
    return tmp_path


def test_set_as_of_keeps_comments_and_other_keys(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("# top\ndata:\n  source: sim   # the source\n  as_of: '2026-11-20'  # day\n  start: '2020-01-01'\naudit:\n  as_of: 1\n")
    assert set_as_of(p, __import__("datetime").date(2026, 11, 24))
    assert p.read_text() == "# top\ndata:\n  source: sim   # the source\n  as_of: '2026-11-24'  # day\n  start: '2020-01-01'\naudit:\n  as_of: 1\n"


def test_advance_refuses_a_day_that_has_not_closed(project, capsys):
    assert main(["advance", "--no-repro", "--as-of", "2026-11-26"]) == 2
    assert "has not closed yet" in capsys.readouterr().err
    assert main(["advance", "--no-repro"]) == 0
    assert "as_of: '2026-11-25'" in (project / "params.yaml").read_text()
    assert main(["advance", "--no-repro", "--as-of", "2026-11-01"]) == 2  # backwards needs a flag


def test_discover_then_ingest_with_a_failing_symbol_and_strict_mode(project, capsys):
    assert main(["discover"]) == 0
    cands = json.loads((project / "data/export/candidates.json").read_text())
    cands["candidates"] = cands["candidates"][:3] + [{"symbol": "SIM:NOPEUSDT"}]
    (project / "data/export/candidates.json").write_text(json.dumps(cands))
    assert main(["ingest"]) == 0
    err = capsys.readouterr().err
    assert "FAILED SIM:NOPEUSDT" in err and "3 fetched" in err and "1 failed" in err
    assert main(["ingest", "--strict"]) == 1
    assert main(["audit"]) == 0
    assert "SIM:NOPEUSDT" in json.loads((project / "data/lakehouse/audit.json").read_text())["missing_candidates"]


def test_a_bad_scanner_is_a_clear_error(project, capsys):
    (project / "configs/scanners/zz_bad.yaml").write_text("base: _base\nlimt: 3\n")
    assert main(["discover"]) == 2
    err = capsys.readouterr().err
    assert "zz_bad.yaml" in err and "unknown key 'limt'" in err


def test_ingest_refuses_an_as_of_that_has_not_closed(project, capsys, monkeypatch):
    monkeypatch.setenv("QUANTLAKE_NOW", "2026-11-20T18:00:00Z")
    assert main(["ingest"]) == 2
    assert "has not closed yet" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "quantlake.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "discover" in out.stdout and "ingest" in out.stdout and "audit" in out.stdout
