"""The one place that knows the layers of the Data Cycle and how to read bars from them.

Each layer is owned by one DVC stage (ARCHITECTURE.md section 1):

    data/staging/bars/        ingest   (sanitized bars + bookkeeping)
    data/staging/quarantine/  ingest   (everything a gate removed)
    data/staging/repairs/     repair   (bars re-fetched for gap windows; issue 4)
    data/staging/features/    features (point-in-time technical ratings; issue 4)
    data/lakehouse/           audit    (the Golden Copy: the only layer the Alpha Cycle reads)
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .contracts import OHLCV_COLUMNS, ContractError, SymbolId, coerce_bars
from .storage import read_bars as read_bar_file

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
    path = layers.repairs / sid.filename
    return read_bar_file(path) if path.exists() else None


def read_bars(layers: Layers, sid: SymbolId) -> pd.DataFrame:
    """A symbol's bars for everyone downstream of repair: staged bars merged with repaired ones."""
    path = layers.staging_bars / sid.filename
    if not path.exists():
        raise ContractError(f"{sid}: no staged bar file {path}")
    return merged_bars(read_bar_file(path), read_repairs(layers, sid))



def swap_dir_into_place(new: Path, target: Path) -> None:
    """Replace the folder `target` with `new` (same parent) so that readers never see a mix.

    POSIX cannot atomically replace a non-empty folder, so the old one is first renamed aside
    (`.NAME.old`) and removed after the new one is in place; `recover_swap` restores the old
    one if a crash happened between the two renames.
    """
    new, target = Path(new), Path(target)
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def recover_swap(target: Path) -> bool:
    """If a crash left `target` missing and its old version aside, put the old one back."""
    target = Path(target)
    old = target.parent / f".{target.name}.old"
    if not target.exists() and old.exists():
        os.replace(old, target)
        return True
    return False
