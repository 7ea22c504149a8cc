"""The Alpha Cycle's stage commands: thin IO around the pure research functions.

Each function reads its inputs from fixed paths (DVC deps), runs the core and writes its
outputs atomically (DVC outs), every output carrying the snapshot id and the run id. The
CLI installs the network guard before calling any of them.

Every stage verifies what it reads: snapshot files against the manifest (`Snapshot`), stage
outputs by the snapshot_id they carry (`read_checked`). The strategy, today's portfolio and
the equal-weight baseline draw their pools from the snapshot's point-in-time universe on each
decision date (`universe_mask`; every certified symbol when the snapshot has no universe).

    snapshot     data/lakehouse/            -> artifacts/snapshot/
    returns      artifacts/snapshot/        -> artifacts/alpha/returns_matrix.parquet, traded_value.parquet
    select       returns + features         -> artifacts/alpha/selection.json
    synthesize   returns + selection        -> artifacts/alpha/atoms/
    optimize     atoms + selection          -> artifacts/alpha/portfolio.json
    backtest     returns + features         -> artifacts/backtest/ (BACKTEST_FILES: metrics, plots, tear sheet)

`select`, `synthesize` and `optimize` together are `backtest.build_portfolio` cut at its
seams (the same functions, in the same order, on the same inputs), run once at `as_of`;
the backtest calls `build_portfolio` at every rebalance date. Every function takes the checked
params model (`quantlake.params.Params`); `params.backtest` is the whole recipe.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.universe import membership_matrix, tradable_scanners
from ..storage import atomic_write_bytes, atomic_write_json, read_json, table_to_parquet_bytes
from ..params import Params
from .backtest import CURVES, BacktestResult, optimize_atoms, recipe_inputs, walk_forward
from .provenance import ALPHA_SECTIONS, params_hash, stamp
from .returns import DATE_INDEX_NAME, panels_from_files
from .ratings import RatingsTable
from .selection import RATING_SOURCE_COLUMNS, select_assets
from .snapshot import Snapshot, SnapshotError, load_snapshot, take_snapshot
from .synthesis import Atom, AtomSet, synthesize
from .tearsheet_figures import headline_metrics, holdings_long, summary_line, tearsheet_figures

RETURNS = "returns_matrix.parquet"
TRADED_VALUE = "traded_value.parquet"
SELECTION = "selection.json"
ATOMS = "atoms"
PORTFOLIO = "portfolio.json"
# artifacts/backtest/: what each file is (dvc.yaml declares them; git keeps metrics.json and the plot CSVs)
BACKTEST_FILES = {
    "metrics.json": "DVC metrics: the headline figures, flat (tearsheet_figures.HEADLINE)",
    "performance.json": "every figure of every curve (the tear sheet's table)",
    "provenance.json": "snapshot_id, run_id, params hash, code version, as_of, method",
    "equity.csv": "DVC plot: date x curves, from 1.0",
    "drawdown.csv": "DVC plot: date x curves, E / peak - 1",
    "holdings.csv": "DVC plot: date, rank, symbol, weight: top holdings and other at each rebalance",
    "weights.csv": "date, symbol, weight: every weight at each rebalance",
    "windows.csv": "one row per rebalance",
    "tearsheet.png": "the tear sheet (DVC image plot)",
    "tearsheet.html": "the tear sheet, self-contained HTML",
}


# --------------------------------------------------------------------------- frames on disk


def write_wide(path: Path, frame: pd.DataFrame, provenance: dict) -> None:
    """A date x column frame as Parquet (the index becomes the `date` column)."""
    table = pa.Table.from_pandas(frame.rename_axis(DATE_INDEX_NAME).reset_index(), preserve_index=False)
    atomic_write_bytes(path, table_to_parquet_bytes(table, provenance))


def read_wide(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    return frame.set_index(DATE_INDEX_NAME)


def read_provenance(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def read_checked(path: Path, snap: Snapshot) -> pd.DataFrame | dict:
    """A stage output (Parquet frame or JSON document), refused unless made from `snap`."""
    path = Path(path)
    doc = read_json(path) if path.suffix == ".json" else None
    made_from = doc.get("snapshot_id") if doc is not None else read_provenance(path).get("snapshot_id")
    if made_from != snap.snapshot_id:
        raise SnapshotError(f"{path} was made from snapshot {str(made_from)[:16]}, not {snap.snapshot_id[:16]}: run `dvc repro`")
    return doc if doc is not None else read_wide(path)


def universe_mask(snap: Snapshot, returns: pd.DataFrame) -> pd.DataFrame | None:
    """Date x symbol bool on every day of `returns`' span: members of the snapshot's universe.

    Only the scanners that keep TRADING symbols count (not those listing halted/delisted
    pairs). None when the snapshot has no universe (every certified symbol is eligible).
    """
    universe = snap.universe()
    if universe is None:
        return None
    days = pd.date_range(returns.index[0], returns.index[-1], freq="D", name=DATE_INDEX_NAME)
    return membership_matrix(universe, days, list(returns.columns), tradable_scanners(universe))


# --------------------------------------------------------------------------- stages


def run_snapshot(lakehouse: Path, out: Path, as_of: dt.date) -> Snapshot:
    return take_snapshot(lakehouse, out, as_of)


def run_returns(snapshot_dir: Path, alpha_dir: Path, params: Params) -> pd.DataFrame:
    snap = load_snapshot(snapshot_dir, verify=())  # bar_files() verifies the bars it returns
    prov = stamp(snap.snapshot_id, params, sections=())
    # one read of the three needed columns per file (benchmarks/README.md, item 3)
    returns, traded_value = panels_from_files(snap.bar_files())
    write_wide(alpha_dir / RETURNS, returns, prov)
    write_wide(alpha_dir / TRADED_VALUE, traded_value, prov)
    return returns


def _inputs(alpha_dir: Path, snapshot_dir: Path):
    snap = load_snapshot(snapshot_dir, verify=())  # each part is verified when it is read
    returns, traded_value = read_checked(alpha_dir / RETURNS, snap), read_checked(alpha_dir / TRADED_VALUE, snap)
    as_of = pd.Timestamp(snap.as_of)
    known_returns, known_value = recipe_inputs(returns, traded_value, as_of)
    return snap, as_of, known_returns, known_value


def run_select(alpha_dir: Path, snapshot_dir: Path, params: Params) -> dict:
    snap, as_of, returns, traded_value = _inputs(alpha_dir, snapshot_dir)
    recipe = params.backtest
    start = as_of - pd.Timedelta(days=recipe.selection.train_days - 1)  # the ratings it reads
    ratings = snap.features(columns=RATING_SOURCE_COLUMNS, start=start, end=as_of, symbol_category=True)
    selection = select_assets(returns, traded_value, as_of, recipe.selection, ratings, universe_mask(snap, returns))
    doc = {**stamp(snap.snapshot_id, params, sections=("selection",)), **selection.to_dict()}
    atomic_write_json(alpha_dir / SELECTION, doc)
    return doc


def run_synthesize(alpha_dir: Path, snapshot_dir: Path, params: Params) -> AtomSet:
    snap, as_of, returns, _ = _inputs(alpha_dir, snapshot_dir)
    recipe = params.backtest
    selected = read_checked(alpha_dir / SELECTION, snap)["selected"]
    atoms = synthesize(returns, selected, recipe.synthesis)
    out = alpha_dir / ATOMS
    out.mkdir(parents=True, exist_ok=True)
    prov = stamp(snap.snapshot_id, params, sections=("selection", "synthesis"))
    write_wide(out / "returns.parquet", atoms.returns, prov)
    write_wide(out / "positions.parquet", atoms.positions, prov)
    atomic_write_json(
        out / "atoms.json",
        {
            **prov,
            "as_of": as_of.date().isoformat(),
            "atoms": [{"id": a.id, "symbol": a.symbol, "logic": a.logic, "direction": a.direction} for a in atoms.atoms],
            "physical_map": "net weight of a symbol on day d = sum over its atoms of atom weight x positions[d, atom]",
        },
    )
    return atoms


def read_atoms(alpha_dir: Path, snap: Snapshot | None = None) -> AtomSet:
    """The synthesize stage's atoms (checked to come from `snap` when given)."""
    out = alpha_dir / ATOMS
    doc, returns, positions = (
        (read_json(out / "atoms.json"), read_wide(out / "returns.parquet"), read_wide(out / "positions.parquet"))
        if snap is None
        else tuple(read_checked(out / name, snap) for name in ("atoms.json", "returns.parquet", "positions.parquet"))
    )
    ids = [a["id"] for a in doc["atoms"]]
    return AtomSet(atoms=tuple(Atom.parse(i) for i in ids), returns=returns[ids] if ids else returns, positions=positions[ids] if ids else positions)


def run_optimize(alpha_dir: Path, snapshot_dir: Path, params: Params) -> dict:
    snap, as_of, _, _ = _inputs(alpha_dir, snapshot_dir)
    recipe = params.backtest
    selection = read_checked(alpha_dir / SELECTION, snap)
    clusters = pd.Series({s: int(c) for c, members in selection["clusters"].items() for s in members}, dtype="int64")
    atoms = read_atoms(alpha_dir, snap)
    train_start = as_of - pd.Timedelta(days=recipe.train_days - 1)
    atom_weights, caps = optimize_atoms(atoms, clusters, train_start, as_of, recipe.optimize)
    weights = atoms.to_physical(atom_weights, as_of + pd.Timedelta(days=1))
    doc = {
        **stamp(snap.snapshot_id, params),
        "as_of": as_of.date().isoformat(),
        "train_start": train_start.date().isoformat(),
        "held_from": (as_of + pd.Timedelta(days=1)).date().isoformat(),
        "method": recipe.optimize.method,
        "weights": {s: float(w) for s, w in weights.items()},
        "atom_weights": {a: float(w) for a, w in atom_weights.items()},
        "caps": caps,
    }
    atomic_write_json(alpha_dir / PORTFOLIO, doc)
    return doc


@dataclass(frozen=True)
class BacktestInputs:
    """Everything a walk-forward reads, loaded once (the backtest stage and every sweep point)."""

    snapshot: Snapshot
    returns: pd.DataFrame
    traded_value: pd.DataFrame
    ratings: RatingsTable | None
    eligible: pd.DataFrame | None  # the point-in-time universe (`universe_mask`)
    # the selection's rankings on these inputs, by date and selection params (`select_assets`):
    # every walk-forward over them (a sweep's points) shares them
    rankings: dict = field(default_factory=dict, compare=False, repr=False)


def backtest_inputs(alpha_dir: Path, snapshot_dir: Path) -> BacktestInputs:
    snap = load_snapshot(snapshot_dir, verify=())  # each part is verified when it is read
    returns, traded_value = read_checked(alpha_dir / RETURNS, snap), read_checked(alpha_dir / TRADED_VALUE, snap)
    # only what the selection reads, indexed once for every rebalance, read a fragment at a
    # time: the whole table as a frame cost 1 GB of peak memory at 5,000 symbols
    files = snap.feature_files()
    ratings = RatingsTable.read(files) if files else None
    return BacktestInputs(snap, returns, traded_value, ratings, universe_mask(snap, returns))


def backtest_from_inputs(inputs: BacktestInputs, params: Params) -> BacktestResult:
    """The walk-forward of params.yaml's recipe on these inputs."""
    return walk_forward(inputs.returns, inputs.traded_value, params.backtest, inputs.ratings, eligible=inputs.eligible,
                        rankings=inputs.rankings)


def run_backtest(alpha_dir: Path, snapshot_dir: Path, out_dir: Path, params: Params) -> dict:
    """Walk forward and write BACKTEST_FILES; returns the full per-curve metrics."""
    inputs = backtest_inputs(alpha_dir, snapshot_dir)
    snap, recipe = inputs.snapshot, params.backtest
    result = backtest_from_inputs(inputs, params)
    prov = {
        **stamp(snap.snapshot_id, params),
        "params_sha256": params_hash(params),
        "as_of": snap.manifest["as_of"],
        "method": recipe.optimize.method,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    equity = result.equity[list(CURVES)].rename_axis("date")
    figures = tearsheet_figures(equity, result.metrics, result.trading, result.weights)
    # metrics.json keeps HEADLINE's order (strategy first): `dvc exp show` lists columns as the file does
    headline = json.dumps(headline_metrics(figures.metrics), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(out_dir / "metrics.json", headline.encode())
    atomic_write_json(out_dir / "performance.json", figures.metrics)
    atomic_write_json(out_dir / "provenance.json", prov)
    _write_csv(out_dir / "equity.csv", equity, index=True)
    _write_csv(out_dir / "drawdown.csv", figures.drawdown.rename_axis("date"), index=True)
    _write_csv(out_dir / "holdings.csv", holdings_long(figures.holdings))
    _write_csv(out_dir / "weights.csv", result.weights)
    _write_csv(out_dir / "windows.csv", result.windows)
    title = f"quantlake backtest · {recipe.optimize.method} · as of {snap.manifest['as_of']} · run {prov['run_id'][:12]} · snapshot {snap.snapshot_id[:12]}"
    from .tearsheet import render_tearsheet  # matplotlib: only here
    from .tearsheet_html import render_html

    png = render_tearsheet(figures, title)
    atomic_write_bytes(out_dir / "tearsheet.png", png)
    shown = {k: prov[k] for k in ("as_of", "method", "snapshot_id", "run_id", "code_version")}
    atomic_write_bytes(out_dir / "tearsheet.html", render_html(figures, title, png, shown))
    return figures.metrics


def backtest_summary(metrics: dict, out_dir: Path, report: Path = Path("artifacts/reports/data_audit.html")) -> list[str]:
    """The backtest stage's last lines: the figures as people read them, then where to look."""
    lines = [f"backtest {summary_line(f'{name:>12}', metrics[name])}" for name in CURVES if name in metrics]
    lines.append(f"backtest: tear sheet {out_dir / 'tearsheet.png'} (and {out_dir / 'tearsheet.html'}); data report {report}")
    return lines


def _write_csv(path: Path, frame: pd.DataFrame, index: bool = False) -> None:
    text = frame.to_csv(index=index, date_format="%Y-%m-%d", float_format="%.10g", lineterminator="\n")
    atomic_write_bytes(path, text.encode())


# --------------------------------------------------------------------------- sweep

SWEEP_RESULTS = "results.parquet"
SWEEP_METRICS = "metrics.json"
SWEEP_SUMMARY = "summary.json"
SWEEP_POINTS = "points.csv"


def sweep_headline(doc: dict) -> dict:
    """The sweep's DVC metrics: flat, short keys (a few columns in `dvc exp show`)."""
    best = doc.get("best") or {}
    return {
        "sweep_trials": doc["trials"],
        "sweep_failed": doc["failed"],
        "sweep_best_sharpe": best.get("sharpe"),
        "sweep_dsr": (doc.get("dsr") or {}).get("dsr"),
        "sweep_pbo": (doc.get("pbo") or {}).get("pbo"),
    }


def run_sweep(alpha_dir: Path, snapshot_dir: Path, out_dir: Path, params: Params, say=print) -> dict:
    """Every point of `sweep.grid` as a full walk-forward on the same snapshot; writes
    results.parquet (one row per point), summary.json (trials, the best and default points,
    DSR and PBO with their inputs), metrics.json (the few figures `dvc exp show` lists) and
    points.csv (Sharpe per point, for the DVC plot)."""
    from .sweep import default_point, expand_grid, results_frame, summary
    from .sweep_cluster import InputRef, run_points

    sweep = params.sweep
    points = expand_grid(params, sweep)  # a bad grid value is an error naming the point before anything runs
    ref = InputRef.of(alpha_dir, snapshot_dir,
                      [alpha_dir / RETURNS, alpha_dir / TRADED_VALUE, snapshot_dir / "manifest.json"])
    outcomes = run_points(ref, points, sweep, say)
    results = results_frame(points, outcomes)
    snap = load_snapshot(snapshot_dir, verify=())  # only its id: the points verified what they read
    prov = stamp(snap.snapshot_id, params, sections=(*ALPHA_SECTIONS, "sweep"))
    doc = summary(results, default_point(params, points), sweep.pbo_blocks)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(results, preserve_index=False)
    atomic_write_bytes(out_dir / SWEEP_RESULTS, table_to_parquet_bytes(table, prov))
    atomic_write_json(out_dir / SWEEP_SUMMARY, doc)
    atomic_write_json(out_dir / SWEEP_METRICS, sweep_headline(doc))
    plot = results.drop(columns=["returns", "returns_start", "error"])
    atomic_write_bytes(out_dir / SWEEP_POINTS, plot.to_csv(index=False, float_format="%.10g").encode())
    return doc
