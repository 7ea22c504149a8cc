"""The Alpha Cycle's only input: an immutable, content-hashed snapshot of the Golden Copy.

`take_snapshot` checks that the lakehouse can serve its certified list (every table present,
each fragment's sha256 as certified, certified for the `as_of` asked, not toxic), aborting
with the name of every symbol that fails, then links (or copies) the tables' fragments into
`artifacts/snapshot/bars/` (same layout as the lakehouse: `NAME_1d.parquet/{KEY}.parquet`),
keeps the certified symbols' feature rows in `artifacts/snapshot/features/` (month fragments,
linked when they hold only those symbols), links the point-in-time universe
(`universe.parquet`), and writes `manifest.json`:

    snapshot_id  sha256 over `as_of` and the sorted (path, sha256) list of `content`
    as_of        the lakehouse's as_of
    files        {table name: {symbol, sha256, fragments: {key: sha256}, rows, start, end}}
    features     {file, rows, sha256, fragments}   when the lakehouse has features
    universe     {file, intervals}        when the lakehouse has a universe
    content      {path relative to the snapshot: sha256} for every file the snapshot holds

`sha256` of a table is `layer.table_digest` of its fragments (as certified). A part of the
snapshot (`bars/`, `features/`, `universe.parquet`) may be one file or a directory of
fragments: `content` lists every file under it. Every reader verifies what it reads against
`content` first (`Snapshot.bar_files`, `features`, `universe`): a missing, extra or changed
file is a `SnapshotError` naming it, so one snapshot_id always means the same inputs.
`load_snapshot(path)` verifies every part at once (`verify=()` defers each part to its
reader). Snapshot files are read-only (linked fragments share their inode with the lakehouse
and staging).

The same lakehouse version always gives the same snapshot_id and byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..contracts import QuantlakeError, SymbolId, parse_date
from ..data.universe import UNIVERSE_FILE, read_universe
from ..layer import fragment_files, table_digest, table_hashes
from ..lakehouse import CERTIFIED
from ..storage import atomic_write_bytes, atomic_write_json, link_or_copy, make_read_only, read_json, read_ohlcv, sha256_file, table_to_parquet_bytes

MANIFEST = "manifest.json"
FEATURES_FILE = "tv_technicals_1d.parquet"
BARS = "bars"
# The parts of a snapshot: name -> path relative to the snapshot (a file or a directory).
PARTS = {"bars": BARS, "features": f"features/{FEATURES_FILE}", "universe": UNIVERSE_FILE}
_DAY_MS = 86_400_000


def _epoch_ms(day: Any, name: str) -> int:
    """Milliseconds since the epoch at the start of a UTC calendar day (date, ISO str, datetime)."""
    return (parse_date(day, field=name) - dt.date(1970, 1, 1)).days * _DAY_MS


class SnapshotError(QuantlakeError):
    """The lakehouse cannot serve the certified list, or a snapshot does not match its manifest."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: dict
    verified: set = field(default_factory=set, compare=False, repr=False)  # parts checked so far

    @property
    def snapshot_id(self) -> str:
        return self.manifest["snapshot_id"]

    @property
    def as_of(self) -> dt.date:
        return parse_date(self.manifest["as_of"])

    @property
    def symbols(self) -> list[str]:
        return sorted(entry["symbol"] for entry in self.manifest["files"].values())

    def verify(self, part: str) -> None:
        """Check every file of `part` against the manifest's content (once per Snapshot)."""
        if part not in self.verified:
            problems = verify_part(self.path, self.manifest["content"], PARTS[part])
            if problems:
                raise SnapshotError(f"snapshot {self.path} does not match its manifest ({self.snapshot_id[:16]}): " + "; ".join(problems))
            self.verified.add(part)

    def bar_files(self) -> dict[str, Path]:
        """Symbol id -> path of its bar file, for every file of the snapshot (verified)."""
        self.verify("bars")
        return {e["symbol"]: self.path / BARS / name for name, e in sorted(self.manifest["files"].items())}

    def bars(self) -> dict[str, pd.DataFrame]:
        """Symbol id -> bars, for every file of the snapshot."""
        return {symbol: read_ohlcv(path) for symbol, path in self.bar_files().items()}

    def features(
        self,
        columns: Sequence[str] | None = None,
        symbols: Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
        *,
        symbol_category: bool = False,
    ) -> pd.DataFrame | None:
        """The feature table (verified; None when the snapshot has none), reading only what is asked.

        `columns`: the columns to read (all when None); `symbols`: keep these symbols' rows;
        `start` / `end`: keep rows whose `timestamp` falls on a day in [start, end] (inclusive
        calendar days, UTC). The part is verified against the manifest first; projection and
        filters then go to `pq.read_table`, so a single file or a directory dataset of fragments
        is read only where it holds asked rows and columns. `symbol_category`: the `symbol`
        column as a pandas Categorical (read dictionary-encoded: 2 bytes a row instead of a
        string each, and `to_numpy()` shares the few category strings instead of making one
        Python string per row).
        """
        if "features" not in self.manifest:
            return None
        self.verify("features")
        path = self.path / PARTS["features"]
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
        dictionary = ["symbol"] if symbol_category and (columns is None or "symbol" in columns) else None
        return pq.read_table(path, columns=columns, filters=filters or None, read_dictionary=dictionary).to_pandas()

    def feature_files(self) -> list[Path]:
        """The feature table's Parquet files in key order (verified; [] when the snapshot has none)."""
        if "features" not in self.manifest:
            return []
        self.verify("features")
        return fragment_files(self.path / PARTS["features"])

    def universe(self) -> pd.DataFrame | None:
        """The point-in-time universe's intervals (verified), or None when the snapshot has none."""
        if "universe" not in self.manifest:
            return None
        self.verify("universe")
        return read_universe(self.path / PARTS["universe"])


def snapshot_id(content: dict[str, str], as_of: str) -> str:
    payload = json.dumps({"as_of": as_of, "content": sorted(content.items())}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def files_under(root: Path, rel: str) -> list[str]:
    """Paths (relative to `root`, '/'-separated, sorted) of every file at or under `root / rel`."""
    top = root / rel
    if top.is_file():
        return [rel]
    found = []
    for folder, _, names in os.walk(top):
        found += [Path(folder, n).relative_to(root).as_posix() for n in names]
    return sorted(found)


def hash_part(root: Path, rel: str, known: dict[str, str] | None = None) -> dict[str, str]:
    """{path: sha256} for every file of a part; `known` hashes (just verified) are reused."""
    known = known or {}
    return {f: known.get(f) or sha256_file(root / f) for f in files_under(root, rel)}


def verify_part(root: Path, content: dict[str, str], rel: str) -> list[str]:
    """Every file of a part that is missing, extra or changed against `content`."""
    prefix = rel + "/"
    want = {f: h for f, h in content.items() if f == rel or f.startswith(prefix)}
    have = set(files_under(root, rel)) if (root / rel).exists() else set()
    problems = [f"{f}: missing" for f in sorted(set(want) - have)]
    problems += [f"{f}: not in the manifest" for f in sorted(have - set(want))]
    problems += [f"{f}: sha256 differs from the manifest (changed after the snapshot)" for f in sorted(have & set(want)) if sha256_file(root / f) != want[f]]
    return problems


def link_part(src: Path, dst: Path) -> None:
    """Hard-link (or copy) a file, or every file of a directory, from the lakehouse."""
    if src.is_dir():
        for rel in files_under(src, "."):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(src / rel, dst / rel)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst)


def table_entry(path: Path) -> dict:
    """The manifest fields of a fragmented table: its fragments' hashes and their digest."""
    frags = table_hashes(path)
    return {"sha256": table_digest(frags), "fragments": frags}


def verify_table(path: Path, entry: dict) -> str | None:
    """Why the table at `path` does not match its manifest `entry` (None when it does)."""
    frags = table_hashes(path)
    if not frags:
        return f"{path} is missing"
    if frags != entry.get("fragments") or table_digest(frags) != entry.get("sha256"):
        changed = sorted(k for k in set(frags) | set(entry.get("fragments") or {}) if frags.get(k) != (entry.get("fragments") or {}).get(k))
        return f"{path.name}: fragment(s) {changed} differ"
    return None


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
        elif not entry.get("fragments"):
            problems.append(f"{sym}: certified.json lists no fragments (a lakehouse in the old layout: run the Data Cycle or `quantlake migrate`)")
        elif (why := verify_table(path, entry)) is not None:
            problems.append(f"{sym}: stale table {why} (sha256 differs from certified.json)")
    return problems


def snapshot_features(src: Path, dst: Path, symbols: set[str]) -> dict:
    """Keep the feature rows of `symbols` in `dst` (month fragments); returns its manifest entry.

    The audit publishes features for certified symbols only, so a month usually holds nothing
    to drop: then it is linked like the bar fragments (DVC stores one cache object for both).
    Otherwise the kept rows of that month are written anew.
    """
    dst.mkdir(parents=True)
    rows = 0
    for path in fragment_files(src):
        held = set(pq.read_table(path, columns=["symbol"]).column("symbol").unique().to_pylist())
        if held <= symbols:
            link_or_copy(path, dst / path.name)
            rows += pq.read_metadata(path).num_rows
            continue
        kept = pq.read_table(path, filters=[("symbol", "in", sorted(symbols))])  # same schema and row order
        if kept.num_rows:
            atomic_write_bytes(dst / path.name, table_to_parquet_bytes(kept))
            rows += kept.num_rows
    return {"file": PARTS["features"], "rows": int(rows), **table_entry(dst)}


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
        e["file"]: {"symbol": sym, "sha256": e["sha256"], "fragments": e["fragments"], "rows": e["rows"], "start": e["start_date"], "end": e["end_date"]}
        for sym, e in sorted(certified["symbols"].items())
    }
    manifest: dict = {"snapshot_id": None, "as_of": certified["as_of"], "files": files}

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / BARS).mkdir(parents=True)
    for name, entry in files.items():
        (tmp / BARS / name).mkdir()
        for key in entry["fragments"]:
            link_or_copy(lakehouse / name / f"{key}.parquet", tmp / BARS / name / f"{key}.parquet")
    # bar fragments were hashed against certified.json just now: reuse those hashes
    content = hash_part(tmp, BARS, {f"{BARS}/{name}/{key}.parquet": h for name, e in files.items() for key, h in e["fragments"].items()})
    features = lakehouse / "features" / FEATURES_FILE
    if features.is_dir():
        manifest["features"] = snapshot_features(features, tmp / PARTS["features"], {f["symbol"] for f in files.values()})
        # the fragments were hashed for the manifest just now: reuse those hashes
        content.update(hash_part(tmp, PARTS["features"], {f"{PARTS['features']}/{key}.parquet": h for key, h in manifest["features"]["fragments"].items()}))
    universe = lakehouse / UNIVERSE_FILE
    if universe.exists():
        link_part(universe, tmp / PARTS["universe"])
        manifest["universe"] = {"file": PARTS["universe"], "intervals": len(read_universe(tmp / PARTS["universe"]))}
        content.update(hash_part(tmp, PARTS["universe"]))
    manifest["content"] = dict(sorted(content.items()))
    manifest["snapshot_id"] = snapshot_id(manifest["content"], certified["as_of"])
    atomic_write_json(tmp / MANIFEST, manifest)
    for path in tmp.rglob("*"):
        if path.is_file():
            make_read_only(path)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return Snapshot(out, manifest, {"bars", "features", "universe"})


def load_snapshot(path: Path, *, verify: tuple[str, ...] | None = None) -> Snapshot:
    """Open a snapshot: check its snapshot_id, then verify the parts in `verify` (None: all).

    Parts not verified here are verified by the reader that first reads them.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise SnapshotError(f"{manifest_path} does not exist: run `dvc repro snapshot`")
    manifest = read_json(manifest_path)
    if "content" not in manifest:
        raise SnapshotError(f"{manifest_path} lists no content (an older snapshot format): run `dvc repro snapshot`")
    if manifest["snapshot_id"] != snapshot_id(manifest["content"], manifest["as_of"]):
        raise SnapshotError(f"snapshot {path}: snapshot_id does not match its content list")
    unknown = sorted(f for f in manifest["content"] if not any(f == r or f.startswith(r + "/") for r in PARTS.values()))
    if unknown:
        raise SnapshotError(f"snapshot {path}: manifest lists files outside its parts: {', '.join(unknown)}")
    listed = {f.split("/")[1] for f in manifest["content"] if f.startswith(BARS + "/")}
    if listed != set(manifest["files"]):
        odd = sorted(listed ^ set(manifest["files"]))
        raise SnapshotError(f"snapshot {path}: the bar files of the manifest and its content list differ: {', '.join(odd[:10])}")
    snap = Snapshot(path, manifest)
    for part in PARTS if verify is None else verify:
        if part == "bars" or part in manifest:
            snap.verify(part)
    return snap
