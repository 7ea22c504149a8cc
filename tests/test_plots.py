"""DVC plots: the top-level definitions in dvc.yaml, the templates in .dvc/plots/ and what DVC renders."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
import yaml
from repo_tools import ROOT, dvc, git, repo_env

from quantlake.alpha.backtest import CURVES
from quantlake.alpha.stages import BACKTEST_FILES
from quantlake.alpha.tearsheet import holding_colours
from quantlake.alpha.tearsheet_figures import OTHER, TOP_HOLDINGS, holdings_long, top_holdings

PLOTS_DIR = ROOT / ".dvc" / "plots"
ANCHOR = re.compile(r"<DVC_METRIC_[A-Z_]+>")
# the columns of the CSVs the backtest stage writes (stages.run_backtest)
CSV_COLUMNS = {
    "artifacts/backtest/equity.csv": ["date", *CURVES],
    "artifacts/backtest/drawdown.csv": ["date", *CURVES],
    "artifacts/backtest/holdings.csv": list(holdings_long(top_holdings(pd.DataFrame(
        {"date": pd.to_datetime(["2024-01-01"]), "symbol": ["SIM:AUSDT"], "weight": [1.0]}))).columns),
}


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def top_level_plots() -> dict:
    """{plot id: definition} of dvc.yaml's top-level plots (a bare path has an empty definition)."""
    out = {}
    for item in dvc_yaml()["plots"]:
        (name, spec), = (item.items() if isinstance(item, dict) else [(item, {})])
        out[name] = spec or {}
    return out


def template(name: str) -> dict:
    return json.loads((PLOTS_DIR / f"{name}.json").read_text())


def encodings(spec: dict) -> dict:
    return spec.get("encoding") or spec["spec"]["encoding"]


def test_every_chart_has_a_date_axis_and_y_fields_the_backtest_writes():
    plots = top_level_plots()
    charts = {k: v for k, v in plots.items() if v}
    assert set(charts) == {"equity", "drawdown", "holdings"}
    for name, spec in charts.items():
        assert spec["x"] == "date", name
        t = template(spec["template"])
        assert encodings(t)["x"]["type"] == "temporal", name  # DVC's default template reads dates as numbers
        assert encodings(t)["x"]["field"] == "<DVC_METRIC_X>"
        assert "<DVC_METRIC_DATA>" in json.dumps(t)
        for path, fields in spec["y"].items():
            fields = [fields] if isinstance(fields, str) else fields
            assert set(fields) <= set(CSV_COLUMNS[path]), (name, path)
            assert path.split("/")[-1] in BACKTEST_FILES
    assert template("dated_log")["encoding"]["y"]["scale"]["type"] == "log"


def test_plot_files_are_plain_outputs_and_the_tear_sheet_is_an_image_plot():
    plots = top_level_plots()
    assert "artifacts/backtest/tearsheet.png" in plots and plots["artifacts/backtest/tearsheet.png"] == {}
    backtest = dvc_yaml()["stages"]["backtest"]
    assert "plots" not in backtest  # a stage-level plot would add a second, default-template chart
    outs = {}
    for item in backtest["outs"]:
        path, opts = next(iter(item.items())) if isinstance(item, dict) else (item, {})
        outs[path] = opts
    for path in CSV_COLUMNS:
        assert outs[path] == {"cache": False}, path  # git keeps the plot data (dvc plots diff reads it per revision)
    assert "artifacts/backtest/tearsheet.png" in outs
    assert [next(iter(m)) for m in backtest["metrics"]] == ["artifacts/backtest/metrics.json"]
    assert "metrics" not in dvc_yaml()  # the data-audit counts are not experiment metrics
    declared = set(outs) | {next(iter(m)) for m in backtest["metrics"]}
    assert {f"artifacts/backtest/{name}" for name in BACKTEST_FILES} == declared


def test_holdings_template_uses_the_tear_sheets_colours_with_other_last_in_grey():
    t = template("holdings")
    colour = encodings(t)["color"]
    names = [f"s{k}" for k in range(TOP_HOLDINGS)] + [OTHER]
    assert colour["scale"]["range"] == holding_colours(names)
    assert colour["sort"] == {"field": "stack_rank", "op": "min"}  # "other" has the last rank
    stack = next(s for s in t["transform"] if "stack" in s)
    assert stack["groupby"] == ["rev", "<DVC_METRIC_X>"]  # revisions never stack on each other
    assert t["facet"]["row"]["field"] == "rev"


def test_offline_html_template_loads_vega_from_local_files():
    page = (PLOTS_DIR / "offline.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN script tags are left out
    sources = re.findall(r'<script src="([^"]+)"', page)
    assert [s.split("/")[2] for s in sources] == ["vega", "vega-lite", "vega-embed"]
    assert all(s.startswith("../node_modules/") for s in sources)
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/dvc_plots/" in ignored and "/node_modules/" in ignored


@pytest.mark.integration
def test_dvc_renders_dated_specs_and_diffs_two_revisions(tmp_path):
    """`dvc plots show/diff --json` with this repository's dvc.yaml plots and templates."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = repo_env(repo)
    git(["init", "-q", "-b", "main"], repo, env)
    dvc(["init", "-q"], repo, env)
    shutil.copytree(PLOTS_DIR, repo / ".dvc" / "plots")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": dvc_yaml()["plots"]}, sort_keys=False))
    out = repo / "artifacts" / "backtest"
    out.mkdir(parents=True)
    days = pd.date_range("2024-01-01", periods=40, freq="D", name="date")

    def write(scale: float) -> None:
        equity = pd.DataFrame({c: [1.0 + scale * k / 100 for k in range(40)] for c in CURVES}, index=days)
        equity.to_csv(out / "equity.csv", date_format="%Y-%m-%d")
        (equity / equity.cummax() - 1).to_csv(out / "drawdown.csv", date_format="%Y-%m-%d")
        weights = pd.DataFrame({"date": [days[0]] * 2 + [days[30]] * 2, "symbol": ["SIM:AUSDT", "SIM:BUSDT"] * 2,
                                "weight": [0.6, 0.4, 0.3, 0.7]})
        holdings_long(top_holdings(weights)).to_csv(out / "holdings.csv", index=False, date_format="%Y-%m-%d")
        (out / "tearsheet.png").write_bytes(_tiny_png(scale))

    write(1.0)
    git(["add", "-A"], repo, env)
    git(["commit", "-qm", "one"], repo, env)
    write(2.0)
    git(["commit", "-qam", "two"], repo, env)

    shown = json.loads(dvc(["plots", "show", "--json"], repo, env).stdout)["data"]
    assert set(shown) == {"equity", "drawdown", "holdings", "artifacts/backtest/tearsheet.png"}
    assert shown["artifacts/backtest/tearsheet.png"][0]["type"] == "image"
    for name in ("equity", "drawdown", "holdings"):
        spec = shown[name][0]["content"]
        assert encodings(spec)["x"] == {**encodings(spec)["x"], "field": "date", "type": "temporal"}, name
        assert not ANCHOR.search(json.dumps(spec)), name  # every anchor filled
        rows = spec["data"]["values"]
        assert rows and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]) for r in rows)
    assert {r["field"] for r in shown["equity"][0]["content"]["data"]["values"]} == set(CURVES)

    diff = json.loads(dvc(["plots", "diff", "HEAD~1", "HEAD", "--json"], repo, env).stdout)["data"]
    equity = diff["equity"][0]
    assert equity["revisions"] == ["HEAD~1", "HEAD"]
    last = {(r["rev"], r["field"]): float(r["dvc_inferred_y_value"]) for r in equity["content"]["data"]["values"] if r["date"] == "2024-02-09"}
    assert last[("HEAD~1", "strategy")] == pytest.approx(1.39) and last[("HEAD", "strategy")] == pytest.approx(1.78)
    assert [p["revisions"] for p in diff["artifacts/backtest/tearsheet.png"]] == [["HEAD~1"], ["HEAD"]]
    holdings = diff["holdings"][0]["content"]["data"]["values"]
    assert {r["rev"] for r in holdings} == {"HEAD~1", "HEAD"} and {r["symbol"] for r in holdings} == {"AUSDT", "BUSDT"}


def _tiny_png(scale: float) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (int(100 * scale), 0, 0)).save(buf, format="PNG")
    return buf.getvalue()
