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
    assert "ingest: 4/4 symbols (100%)" in err  # stderr is not a terminal: plain progress lines, not tqdm
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


STAGE_COMMANDS = ["discover", "ingest", "repair", "features", "audit", "report",
                  "snapshot", "returns", "select", "synthesize", "optimize", "backtest"]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_a_params_typo_stops_ingest_before_it_writes_anything(project, capsys):
    text = (project / "params.yaml").read_text().replace("toxic_threshold:", "toxic_treshold:")
    (project / "params.yaml").write_text(text)
    before = _files(project)
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert "params.yaml: data.toxic_treshold: unknown key (did you mean toxic_threshold?)" in err
    assert _files(project) == before and not (project / "data").exists()


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_every_stage_refuses_a_day_that_has_not_closed(project, capsys, monkeypatch, command):
    monkeypatch.setenv("QUANTLAKE_NOW", "2026-11-20T23:59:00Z")  # data.as_of 2026-11-20 closes at midnight
    before = _files(project)
    try:
        assert main([command]) == 2
    finally:
        from quantlake.alpha.netguard import unblock_network

        unblock_network()
    assert "data.as_of=2026-11-20 has not closed yet in UTC" in capsys.readouterr().err
    assert _files(project) == before


@pytest.mark.parametrize("command", [*STAGE_COMMANDS, "publish", "reproduce", "advance"])
def test_every_command_explains_itself(command):
    from quantlake.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    assert sub._name_parser_map[command] is parser and parser.description
    assert any(c.dest == command and c.help for c in sub._choices_actions)
    for action in parser._actions:
        assert action.help, f"quantlake {command} {action.option_strings or action.dest}: no help text"


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "quantlake.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"quantlake {version('quantlake')}"


HEAVY = ("sklearn", "scipy", "matplotlib")
PROBE = """
import sys
from quantlake.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
sys.exit(code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["snapshot", "--help"], ["snapshot"]])
def test_light_commands_do_not_import_the_heavy_libraries(sim_lakehouse, tmp_path, argv):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "data").mkdir()
    import shutil

    shutil.copytree(sim_lakehouse / "lakehouse", tmp_path / "data" / "lakehouse")
    env = {**os.environ, "QUANTLAKE_NOW": "2026-11-26T12:00:00Z"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout[-300:]
    if argv == ["snapshot"]:
        assert (tmp_path / "artifacts/snapshot/manifest.json").exists()


def test_make_help_lists_every_target_with_a_description():
    makefile = (ROOT / "Makefile").read_text()
    targets = [line.split(":")[0] for line in makefile.splitlines() if line and line[0].isalpha() and ":" in line and "=" not in line.split(":")[0]]
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listed = {line.split()[1]: line.split(None, 2)[2] for line in out.stdout.splitlines()}
    assert set(listed) == set(targets) and all(listed.values())
    assert subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True).stdout == out.stdout  # the default target
