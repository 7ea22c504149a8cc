"""The Alpha Cycle's only input: an immutable, content-hashed snapshot of the Golden Copy.

`take_snapshot` checks that the lakehouse can serve its certified list (every file present,
its sha256 as certified, certified for the `as_of` asked, not toxic), aborting with the name
of every symbol that fails, then links (or copies) the files into `artifacts/snapshot/bars/`,
keeps the certified symbols' feature rows in `artifacts/snapshot/features/`, and writes
`manifest.json`:

    snapshot_id  sha256 over the sorted (file, sha256) list plus as_of
    as_of        the lakehouse's as_of
    files        {file name: {symbol, sha256, rows, start, end}}

The same lakehouse version always gives the same snapshot_id and byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Iterable, Sequence

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..contracts import QuantlakeError, SymbolId, parse_date
from ..lakehouse import CERTIFIED
from ..storage import read_json
from ..storage import atomic_write_frame, atomic_write_json, link_or_copy, read_bars, sha256_file

MANIFEST = "manifest.json"
FEATURES_FILE = "tv_technicals_1d.parquet"
_DAY_MS = 86_400_000


def _epoch_ms(day: Any, field: str) -> int:
    """Milliseconds since the epoch at the start of a UTC calendar day (date, ISO str, datetime)."""
    return (parse_date(day, field=field) - dt.date(1970, 1, 1)).days * _DAY_MS


class SnapshotError(QuantlakeError):
    """The lakehouse cannot serve the certified list; the message names every symbol."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def as_of(self) -> dt.date:
        return parse_date(self.manifest["as_of"])

    @property
    def symbols(self) -> list[str]:
        return sorted(entry["symbol"] for entry in self.manifest["files"].values())

    def bar_files(self) -> dict[str, Path]:
        """Symbol id -> path of its bar file, for every file of the snapshot."""
        return {e["symbol"]: self.path / "bars" / name for name, e in sorted(self.manifest["files"].items())}

    def bars(self) -> dict[str, pd.DataFrame]:
        """Symbol id -> bars, for every file of the snapshot."""
        return {symbol: read_bars(path) for symbol, path in self.bar_files().items()}

    def features(
        self,
        columns: Sequence[str] | None = None,
        symbols: Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pd.DataFrame | None:
        """The feature table (None when the snapshot has none), reading only what is asked.

        `columns`: the columns to read (all when None); `symbols`: keep these symbols' rows;
        `start` / `end`: keep rows whose `timestamp` falls on a day in [start, end] (inclusive
        calendar days, UTC). Projection and filters go to `pq.read_table`, so a single file or a
        directory dataset of fragments is read only where it holds asked rows and columns.
        """
        path = self.path / "features" / FEATURES_FILE
        if not path.exists():
            return None
        schema = pq.read_schema(path) if path.is_file() else ds.dataset(path, format="parquet").schema
        if columns is not None:
            unknown = sorted(set(columns) - set(schema.names))
            if unknown:
                raise SnapshotError(f"{path}: no column(s) {unknown} in the feature table (columns: {schema.names})")
            columns = list(columns)
        filters = []
        if symbols is not None:
            filters.append(("symbol", "in", sorted(map(str, symbols))))
        if start is not None:
            filters.append(("timestamp", ">=", _epoch_ms(start, "features(start=)")))
        if end is not None:
            filters.append(("timestamp", "<", _epoch_ms(end, "features(end=)") + _DAY_MS))
        return pq.read_table(path, columns=columns, filters=filters or None).to_pandas()


def snapshot_id(files: dict[str, dict], as_of: str) -> str:
    payload = json.dumps({"as_of": as_of, "files": sorted((name, e["sha256"]) for name, e in files.items())}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def check_servable(lakehouse: Path, certified: dict, as_of: dt.date) -> list[str]:
    """Every reason the lakehouse cannot serve its certified list (empty when it can)."""
    problems = []
    if certified.get("as_of") != as_of.isoformat():
        problems.append(f"certified.json is for as_of {certified.get('as_of')}, not {as_of.isoformat()} (stale lakehouse: run the Data Cycle)")
    if not certified.get("symbols"):
        problems.append("certified.json certifies no symbol")
    for sym, entry in sorted((certified.get("symbols") or {}).items()):
        try:
            sid = SymbolId.parse(sym, where=CERTIFIED)
        except QuantlakeError as exc:
            problems.append(str(exc))
            continue
        path = lakehouse / sid.filename
        if entry.get("status") == "toxic":
            problems.append(f"{sym}: toxic, yet certified")
        elif entry.get("file") != sid.filename:
            problems.append(f"{sym}: certified file {entry.get('file')!r} is not {sid.filename!r}")
        elif not path.exists():
            problems.append(f"{sym}: missing from the lakehouse ({path})")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"{sym}: stale file {path.name} (sha256 differs from certified.json)")
    return problems


def snapshot_features(src: Path, dst: Path, symbols: set[str]) -> dict:
    """Keep the feature rows of `symbols` in `dst`; returns its manifest entry.

    The audit publishes features for certified symbols only, so the lakehouse file usually
    holds nothing to drop: then it is linked like the bar files (no second copy of hundreds of
    MB, and DVC stores one cache object for both). Otherwise the kept rows are written anew.
    """
    held = pq.read_table(src, columns=["symbol"]).column("symbol").unique().to_pylist()
    if set(held) <= symbols:
        link_or_copy(src, dst)
        return {"file": f"features/{FEATURES_FILE}", "rows": pq.read_metadata(dst).num_rows, "sha256": sha256_file(dst)}
    table = pq.read_table(src).to_pandas()
    keep = table[table["symbol"].isin(sorted(symbols))].reset_index(drop=True)
    return {"file": f"features/{FEATURES_FILE}", "rows": int(len(keep)), "sha256": atomic_write_frame(dst, keep)}


def take_snapshot(lakehouse: Path, out: Path, as_of: dt.date) -> Snapshot:
    lakehouse, out = Path(lakehouse), Path(out)
    cert_path = lakehouse / CERTIFIED
    if not cert_path.exists():
        raise SnapshotError(f"{cert_path} does not exist: run the Data Cycle (`dvc repro audit`) first")
    certified = read_json(cert_path)
    problems = check_servable(lakehouse, certified, as_of)
    if problems:
        raise SnapshotError("the lakehouse cannot serve its certified list:\n  " + "\n  ".join(problems))

    files = {
        e["file"]: {"symbol": sym, "sha256": e["sha256"], "rows": e["rows"], "start": e["start_date"], "end": e["end_date"]}
        for sym, e in sorted(certified["symbols"].items())
    }
    manifest = {"snapshot_id": snapshot_id(files, certified["as_of"]), "as_of": certified["as_of"], "files": files}

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bars").mkdir(parents=True)
    for name in files:
        link_or_copy(lakehouse / name, tmp / "bars" / name)
    features = lakehouse / "features" / FEATURES_FILE
    if features.exists():
        (tmp / "features").mkdir()
        manifest["features"] = snapshot_features(features, tmp / "features" / FEATURES_FILE, {f["symbol"] for f in files.values()})
    atomic_write_json(tmp / MANIFEST, manifest)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return Snapshot(out, manifest)


def load_snapshot(path: Path) -> Snapshot:
    """Open a snapshot and verify every file against its manifest."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise SnapshotError(f"{manifest_path} does not exist: run `dvc repro snapshot`")
    manifest = read_json(manifest_path)
    bad = [name for name, e in sorted(manifest["files"].items()) if not (path / "bars" / name).exists() or sha256_file(path / "bars" / name) != e["sha256"]]
    if bad:
        raise SnapshotError(f"snapshot {path} does not match its manifest: {', '.join(bad)}")
    if manifest["snapshot_id"] != snapshot_id(manifest["files"], manifest["as_of"]):
        raise SnapshotError(f"snapshot {path}: snapshot_id does not match its files")
    return Snapshot(path, manifest)
