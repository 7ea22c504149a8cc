"""The one place that knows the layers of the Data Cycle and how to read bars from them.

Each layer is owned by one DVC stage (ARCHITECTURE.md section 1):

    data/staging/bars/        ingest   (sanitized bars + bookkeeping)
    data/staging/quarantine/  ingest   (everything a gate removed)
    data/staging/repairs/     repair   (bars re-fetched for gap windows; issue 4)
    data/staging/features/    features (point-in-time technical ratings; issue 4)
    data/lakehouse/           audit    (the Golden Copy: the only layer the Alpha Cycle reads)

Every table in them is a `quantlake.layer.Layer` table: a directory of immutable fragments
(one per year for bars, one per month for the long feature table).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .contracts import OHLCV_COLUMNS, OHLCV_SCHEMA, ContractError, SymbolId, coerce_bars
from .layer import Layer

CATALOG = "catalog.json"
CERTIFIED = "certified.json"
AUDIT = "audit.json"


@dataclass(frozen=True)
class Layers:
    root: Path = Path("data")

    @property
    def staging_bars(self) -> Path:
        return self.root / "staging" / "bars"

    @property
    def quarantine(self) -> Path:
        return self.root / "staging" / "quarantine"

    @property
    def repairs(self) -> Path:
        return self.root / "staging" / "repairs"

    @property
    def features(self) -> Path:
        return self.root / "staging" / "features"

    @property
    def lakehouse(self) -> Path:
        return self.root / "lakehouse"

    def bars_layer(self) -> Layer:
        return bars_layer(self.staging_bars)

    def repairs_layer(self) -> Layer:
        return bars_layer(self.repairs)


def bars_layer(root: Path) -> Layer:
    """A layer of OHLCV tables (staging bars, repairs, the lakehouse): yearly fragments."""
    return Layer(Path(root), OHLCV_SCHEMA, "year")


def merged_bars(staging: pd.DataFrame, repairs: pd.DataFrame | None) -> pd.DataFrame:
    """Staging bars plus repaired bars, sorted by timestamp; on a day both hold, staging wins.

    (Such a day is drift when the values differ: see `drift_rows`.)
    """
    staging = coerce_bars(staging, where="staging bars")
    if repairs is None or repairs.empty:
        return staging.sort_values("timestamp", kind="stable").reset_index(drop=True)
    repairs = coerce_bars(repairs, where="repaired bars")
    extra = repairs[~repairs["timestamp"].isin(staging["timestamp"])]
    out = pd.concat([staging, extra], ignore_index=True)
    return out.sort_values("timestamp", kind="stable").reset_index(drop=True)


def drift_rows(staging: pd.DataFrame, repairs: pd.DataFrame | None) -> pd.DataFrame:
    """Days held by both layers with different values: `timestamp`, then `{col}_staging`, `{col}_repair`."""
    cols = list(OHLCV_COLUMNS[1:])
    names = ["timestamp", *[f"{c}_staging" for c in cols], *[f"{c}_repair" for c in cols]]
    if repairs is None or repairs.empty:
        return pd.DataFrame({n: pd.Series([], dtype="int64" if n == "timestamp" else "float64") for n in names})
    both = coerce_bars(staging).merge(coerce_bars(repairs), on="timestamp", suffixes=("_staging", "_repair"))
    differs = np.zeros(len(both), dtype=bool)
    for c in cols:
        differs |= both[f"{c}_staging"].to_numpy() != both[f"{c}_repair"].to_numpy()
    return both.loc[differs, names].sort_values("timestamp").reset_index(drop=True)


def read_repairs(layers: Layers, sid: SymbolId) -> pd.DataFrame | None:
    return layers.repairs_layer().read(sid.filename)


def read_bars(layers: Layers, sid: SymbolId) -> pd.DataFrame:
    """A symbol's bars for everyone downstream of repair: staged bars merged with repaired ones."""
    staged = layers.bars_layer().read_table(sid.filename)
    if staged is None:
        raise ContractError(f"{sid}: no staged bar table {layers.staging_bars / sid.filename}")
    repairs = layers.repairs_layer().read_table(sid.filename)
    if repairs is None or repairs.num_rows == 0:  # most symbols: no pandas round trip, no merge
        return sorted_bars(staged)
    return merged_bars(staged.to_pandas(), repairs.to_pandas())


def sorted_bars(table: pa.Table) -> pd.DataFrame:
    """A bar table read with the contract's schema as `merged_bars(frame, None)` returns it.

    The layer reads the contract's types, so the frame is its columns as they are (no
    `coerce_bars` pass); fragments are in key order, so the rows are sorted already and
    `sort_values` runs only when they are not.
    """
    frame = pd.DataFrame({c: table.column(c).to_numpy() for c in OHLCV_COLUMNS}, columns=list(OHLCV_COLUMNS))
    ts = frame["timestamp"].to_numpy()
    if ts.size > 1 and (ts[1:] < ts[:-1]).any():
        frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return frame



def swap_dir_into_place(new: Path, target: Path) -> None:
    """Replace the folder `target` with `new` (same parent) so that readers never see a mix.

    POSIX cannot atomically replace a non-empty folder, so the old one is first renamed aside
    (`.NAME.old`) and removed after the new one is in place; `recover_swap` restores the old
    one if a crash happened between the two renames. An old folder that cannot be removed is
    renamed out of the way (`.NAME.old-N`) instead of blocking the swap.
    """
    new, target = Path(new), Path(target)
    old = target.parent / f".{target.name}.old"
    if old.exists():
        _discard(old)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        _discard(old)


def recover_swap(target: Path) -> bool:
    """Finish a swap a crash interrupted: put the old version back when `target` is missing,
    drop it when the new one is in place. Returns whether the old version was restored."""
    target = Path(target)
    old = target.parent / f".{target.name}.old"
    if not old.exists():
        return False
    if not target.exists():
        os.replace(old, target)
        return True
    _discard(old)
    return False


def remove_stale_temp_dirs(target: Path) -> list[Path]:
    """Remove the `.NAME.tmp-*` build folders and `.NAME.old-N` leftovers a killed run left
    next to `target` (call with the writer's lock held)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    found = sorted(target.parent.glob(f".{target.name}.tmp-*")) + sorted(target.parent.glob(f".{target.name}.old-*"))
    for path in found:
        _rmtree(path)
    return [p for p in found if not p.exists()]


def _discard(old: Path) -> None:
    """Remove `old`; if that fails (permissions), rename it to a free `.old-N` name."""
    if _rmtree(old):
        return
    n = 1
    while (old.parent / f"{old.name}-{n}").exists():
        n += 1
    os.replace(old, old.parent / f"{old.name}-{n}")
    print(f"warning: could not remove {old}; moved it to {old.name}-{n} (remove it by hand)", file=sys.stderr)


def _rmtree(path: Path) -> bool:
    """Remove a tree, making read-only folders writable first; whether it is gone."""
    def unlock(func, p, exc_info):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            func(p)

    with contextlib.suppress(OSError):
        shutil.rmtree(path, onerror=unlock)
    return not os.path.lexists(path)
