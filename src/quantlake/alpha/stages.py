"""The Alpha Cycle's stage commands: thin IO around the pure research functions.

Each function reads its inputs from fixed paths (DVC deps), runs the core and writes its
outputs atomically (DVC outs), every output carrying the snapshot id and the run id. The
CLI installs the network guard before calling any of them.

    snapshot     data/lakehouse/            -> artifacts/snapshot/
    returns      artifacts/snapshot/        -> artifacts/alpha/returns_matrix.parquet, traded_value.parquet
    select       returns + features         -> artifacts/alpha/selection.json
    synthesize   returns + selection        -> artifacts/alpha/atoms/
    optimize     atoms + selection          -> artifacts/alpha/portfolio.json
    backtest     returns + features         -> artifacts/backtest/{metrics.json, equity.csv, ...}

`select`, `synthesize` and `optimize` together are `backtest.build_portfolio` cut at its
seams (the same functions, in the same order, on the same inputs), run once at `as_of`;
the backtest calls `build_portfolio` at every rebalance date.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..storage import atomic_write_bytes, atomic_write_json, read_json, table_to_parquet_bytes
from .backtest import CURVES, optimize_atoms, recipe_inputs, walk_forward
from .provenance import backtest_params, stamp
from .returns import DATE_INDEX_NAME, panels_from_files
from .selection import RATING_SOURCE_COLUMNS, select_assets
from .snapshot import Snapshot, load_snapshot, take_snapshot
from .synthesis import Atom, AtomSet, synthesize
from .tearsheet import render_tearsheet

RETURNS = "returns_matrix.parquet"
TRADED_VALUE = "traded_value.parquet"
SELECTION = "selection.json"
ATOMS = "atoms"
PORTFOLIO = "portfolio.json"


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


# --------------------------------------------------------------------------- stages


def run_snapshot(lakehouse: Path, out: Path, as_of: dt.date) -> Snapshot:
    return take_snapshot(lakehouse, out, as_of)


def run_returns(snapshot_dir: Path, alpha_dir: Path, params: dict) -> pd.DataFrame:
    snap = load_snapshot(snapshot_dir)
    prov = stamp(snap.snapshot_id, params, sections=())
    # one read of the three needed columns per file (benchmarks/README.md, item 3)
    returns, traded_value = panels_from_files(snap.bar_files())
    write_wide(alpha_dir / RETURNS, returns, prov)
    write_wide(alpha_dir / TRADED_VALUE, traded_value, prov)
    return returns


def _inputs(alpha_dir: Path, snapshot_dir: Path):
    snap = load_snapshot(snapshot_dir)
    returns, traded_value = read_wide(alpha_dir / RETURNS), read_wide(alpha_dir / TRADED_VALUE)
    as_of = pd.Timestamp(snap.as_of)
    known_returns, known_value = recipe_inputs(returns, traded_value, as_of)
    return snap, as_of, known_returns, known_value


def run_select(alpha_dir: Path, snapshot_dir: Path, params: dict) -> dict:
    snap, as_of, returns, traded_value = _inputs(alpha_dir, snapshot_dir)
    recipe = backtest_params(params)
    start = as_of - pd.Timedelta(days=recipe.selection.train_days - 1)  # the ratings it reads
    ratings = snap.features(columns=RATING_SOURCE_COLUMNS, start=start, end=as_of)
    selection = select_assets(returns, traded_value, as_of, recipe.selection, ratings)
    doc = {**stamp(snap.snapshot_id, params, sections=("selection",)), **selection.to_dict()}
    atomic_write_json(alpha_dir / SELECTION, doc)
    return doc


def run_synthesize(alpha_dir: Path, snapshot_dir: Path, params: dict) -> AtomSet:
    snap, as_of, returns, _ = _inputs(alpha_dir, snapshot_dir)
    recipe = backtest_params(params)
    selected = read_json(alpha_dir / SELECTION)["selected"]
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


def read_atoms(alpha_dir: Path) -> AtomSet:
    out = alpha_dir / ATOMS
    ids = [a["id"] for a in read_json(out / "atoms.json")["atoms"]]
    return AtomSet(
        atoms=tuple(Atom.parse(i) for i in ids),
        returns=read_wide(out / "returns.parquet")[ids] if ids else read_wide(out / "returns.parquet"),
        positions=read_wide(out / "positions.parquet")[ids] if ids else read_wide(out / "positions.parquet"),
    )


def run_optimize(alpha_dir: Path, snapshot_dir: Path, params: dict) -> dict:
    snap, as_of, _, _ = _inputs(alpha_dir, snapshot_dir)
    recipe = backtest_params(params)
    selection = read_json(alpha_dir / SELECTION)
    clusters = pd.Series({s: int(c) for c, members in selection["clusters"].items() for s in members}, dtype="int64")
    atoms = read_atoms(alpha_dir)
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


def run_backtest(alpha_dir: Path, snapshot_dir: Path, out_dir: Path, params: dict) -> dict:
    snap = load_snapshot(snapshot_dir)
    returns, traded_value = read_wide(alpha_dir / RETURNS), read_wide(alpha_dir / TRADED_VALUE)
    recipe = backtest_params(params)
    result = walk_forward(returns, traded_value, recipe, snap.features(columns=RATING_SOURCE_COLUMNS))
    prov = stamp(snap.snapshot_id, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {**result.metrics, "run": {**prov, "as_of": snap.manifest["as_of"], "method": recipe.optimize.method}}
    atomic_write_json(out_dir / "metrics.json", metrics)
    equity = result.equity[list(CURVES)].rename_axis("date")
    atomic_write_bytes(out_dir / "equity.csv", equity.to_csv(date_format="%Y-%m-%d", float_format="%.10g").encode())
    atomic_write_bytes(out_dir / "weights.csv", result.weights.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.10g").encode())
    atomic_write_bytes(out_dir / "windows.csv", result.windows.to_csv(index=False, date_format="%Y-%m-%d", float_format="%.10g").encode())
    title = f"quantlake backtest · {recipe.optimize.method} · as of {snap.manifest['as_of']} · run {prov['run_id'][:12]} · snapshot {snap.snapshot_id[:12]}"
    atomic_write_bytes(out_dir / "tearsheet.png", render_tearsheet(equity, result.weights, result.metrics, title))
    return metrics
