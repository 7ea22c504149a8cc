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

import pandas as pd

from .contracts import SymbolId
from .storage import read_bars, read_json

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


def read_golden_bars(lakehouse: Path, sid: SymbolId) -> pd.DataFrame:
    """Bars of a certified symbol from the Golden Copy."""
    return read_bars(Path(lakehouse) / sid.filename)


def read_certified(lakehouse: Path) -> dict:
    return read_json(Path(lakehouse) / CERTIFIED)


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
