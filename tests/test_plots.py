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


def entries(items) -> dict:
    """{path: options} of an `outs`/`metrics`/`plots` list (a bare path has no options)."""
    out = {}
    for item in items or []:
        (path, opts), = (item.items() if isinstance(item, dict) else [(item, {})])
        out[path] = opts or {}
    return out


def charts() -> dict:
    """The backtest stage's plots: {csv path: options (template, x, ...)}."""
    return entries(dvc_yaml()["stages"]["backtest"]["plots"])


def template(name: str) -> dict:
    return json.loads((PLOTS_DIR / f"{name}.json").read_text())


def encodings(spec: dict) -> dict:
    return spec.get("encoding") or spec["spec"]["encoding"]


def test_every_chart_has_a_date_axis_and_fields_the_backtest_writes():
    plots = charts()
    assert set(plots) == set(CSV_COLUMNS)
    for path, spec in plots.items():
        assert spec["cache"] is False and spec["x"] == "date", path  # git keeps the plot data: diff per revision
        t = template(spec["template"])
        enc = encodings(t)
        assert enc["x"] == {**enc["x"], "field": "<DVC_METRIC_X>", "type": "temporal"}, path  # not DVC's number axis
        assert "<DVC_METRIC_DATA>" in json.dumps(t) and "<DVC_METRIC_TITLE>" in json.dumps(t)
        fold = next((step["fold"] for step in t.get("transform", []) if "fold" in step), None)
        fields = fold or [spec["y"]]
        assert set(fields) <= set(CSV_COLUMNS[path]), path
        assert path.split("/")[-1] in BACKTEST_FILES
    for name in ("equity", "drawdown"):  # one line per curve, coloured as in the tear sheet
        t = template(name)
        assert next(step["fold"] for step in t["transform"] if "fold" in step) == list(CURVES)
        assert encodings(t)["color"]["scale"]["domain"] == list(CURVES)
        assert encodings(t)["strokeDash"]["field"] == "rev"
    assert template("equity")["encoding"]["y"]["scale"]["type"] == "log"
    assert "type" not in template("drawdown")["encoding"]["y"]["scale"]


def test_the_tear_sheet_is_an_image_plot_and_no_chart_is_declared_twice():
    top = entries(dvc_yaml()["plots"])
    assert top == {"artifacts/backtest/tearsheet.png": {}}  # a top-level twin of a stage plot would draw it twice
    backtest = dvc_yaml()["stages"]["backtest"]
    outs = entries(backtest["outs"])
    assert "artifacts/backtest/tearsheet.png" in outs
    assert list(entries(backtest["metrics"])) == ["artifacts/backtest/metrics.json"]
    assert "metrics" not in dvc_yaml()  # the data-audit counts are not experiment metrics
    declared = set(outs) | set(entries(backtest["metrics"])) | set(charts())
    assert {f"artifacts/backtest/{name}" for name in BACKTEST_FILES} == declared


def test_no_stage_loses_its_run_cache_record():
    """DVC (3.67) keeps no run-cache record for a stage with a `cache: false` out that is not a metric or a plot."""
    for name, stage in dvc_yaml()["stages"].items():
        assert all(opts.get("cache", True) for opts in entries(stage.get("outs")).values()), name


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
    stage = {"cmd": "true", "plots": dvc_yaml()["stages"]["backtest"]["plots"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"backtest": stage}, "plots": dvc_yaml()["plots"]}, sort_keys=False))
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
    assert set(shown) == {*CSV_COLUMNS, "artifacts/backtest/tearsheet.png"}  # one chart per file, no twin
    assert shown["artifacts/backtest/tearsheet.png"][0]["type"] == "image"
    for name in CSV_COLUMNS:
        spec = shown[name][0]["content"]
        assert encodings(spec)["x"] == {**encodings(spec)["x"], "field": "date", "type": "temporal"}, name
        assert not ANCHOR.search(json.dumps(spec)), name  # every anchor filled
        rows = spec["data"]["values"]
        assert rows and all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]) for r in rows)
        assert set(CSV_COLUMNS[name]) <= set(rows[0]), name  # every column reaches the template
    assert shown["artifacts/backtest/equity.csv"][0]["content"]["title"] == "Walk-forward equity (net of costs, log scale)"

    diff = json.loads(dvc(["plots", "diff", "HEAD~1", "HEAD", "--json"], repo, env).stdout)["data"]
    equity = diff["artifacts/backtest/equity.csv"][0]
    assert equity["revisions"] == ["HEAD~1", "HEAD"]
    last = {r["rev"]: float(r["strategy"]) for r in equity["content"]["data"]["values"] if r["date"] == "2024-02-09"}
    assert last["HEAD~1"] == pytest.approx(1.39) and last["HEAD"] == pytest.approx(1.78)
    assert [p["revisions"] for p in diff["artifacts/backtest/tearsheet.png"]] == [["HEAD~1"], ["HEAD"]]
    holdings = diff["artifacts/backtest/holdings.csv"][0]["content"]["data"]["values"]
    assert {r["rev"] for r in holdings} == {"HEAD~1", "HEAD"} and {r["symbol"] for r in holdings} == {"AUSDT", "BUSDT"}


def _tiny_png(scale: float) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (int(100 * scale), 0, 0)).save(buf, format="PNG")
    return buf.getvalue()
