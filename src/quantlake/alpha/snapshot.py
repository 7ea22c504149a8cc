"""The Alpha Cycle's only input: an immutable, content-hashed snapshot of the Golden Copy.

`take_snapshot` checks that the lakehouse can serve its certified list (every table present,
each fragment's sha256 as certified, certified for the `as_of` asked, not toxic), aborting
with the name of every symbol that fails, then links (or copies) the tables' fragments into
`artifacts/snapshot/bars/` (same layout as the lakehouse: `NAME_1d.parquet/{YEAR}.parquet`),
keeps the certified symbols' feature rows in `artifacts/snapshot/features/` (month fragments,
linked when they hold only those symbols), and writes `manifest.json`:

    snapshot_id  sha256 over the sorted (file, sha256) list plus as_of
    as_of        the lakehouse's as_of
    files        {table name: {symbol, sha256, fragments: {key: sha256}, rows, start, end}}
    features     {file, sha256, fragments, rows}

`sha256` of a table is `layer.table_digest` of its fragments. Every manifest entry that has
`fragments` is verified by `load_snapshot` the same way (`verify_table`), so a new table (the
universe, ...) is added to the manifest with `table_entry` and verified for free. Snapshot
files are read-only (linked fragments share their inode with the lakehouse and staging).

The same lakehouse version always gives the same snapshot_id and byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..contracts import QuantlakeError, SymbolId, parse_date
from ..data.features import features_layer
from ..layer import table_digest, table_hashes
from ..lakehouse import CERTIFIED
from ..storage import atomic_write_bytes, atomic_write_json, link_or_copy, make_read_only, read_json, read_ohlcv, sha256_file

MANIFEST = "manifest.json"
FEATURES_FILE = "tv_technicals_1d.parquet"


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
        return {symbol: read_ohlcv(path) for symbol, path in self.bar_files().items()}

    def features(self) -> pd.DataFrame | None:
        path = self.path / "features" / FEATURES_FILE
        return pq.read_table(path).to_pandas() if path.exists() else None


def snapshot_id(files: dict[str, dict], as_of: str) -> str:
    payload = json.dumps({"as_of": as_of, "files": sorted((name, e["sha256"]) for name, e in files.items())}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


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
    layer = features_layer(src.parent)
    dst.mkdir(parents=True)
    rows = 0
    for key, path in layer.fragments(src.name).items():
        held = set(pq.read_table(path, columns=["symbol"]).column("symbol").unique().to_pylist())
        if held <= symbols:
            link_or_copy(path, dst / path.name)
            rows += pq.read_metadata(path).num_rows
            continue
        frame = pq.read_table(path, filters=[("symbol", "in", sorted(symbols))]).to_pandas()
        if len(frame):
            (data,) = layer.encode(frame).values()
            atomic_write_bytes(dst / path.name, data)
            rows += len(frame)
    return {"file": f"features/{FEATURES_FILE}", "rows": int(rows), **table_entry(dst)}


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
    manifest = {"snapshot_id": snapshot_id(files, certified["as_of"]), "as_of": certified["as_of"], "files": files}

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bars").mkdir(parents=True)
    for name, entry in files.items():
        (tmp / "bars" / name).mkdir()
        for key in entry["fragments"]:
            link_or_copy(lakehouse / name / f"{key}.parquet", tmp / "bars" / name / f"{key}.parquet")
    features = lakehouse / "features" / FEATURES_FILE
    if features.is_dir():
        manifest["features"] = snapshot_features(features, tmp / "features" / FEATURES_FILE, {f["symbol"] for f in files.values()})
    atomic_write_json(tmp / MANIFEST, manifest)
    for path in tmp.rglob("*"):
        if path.is_file():
            make_read_only(path)
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
    bad = [why for name, e in sorted(manifest["files"].items()) if (why := verify_table(path / "bars" / name, e)) is not None]
    if manifest.get("features") and (why := verify_table(path / manifest["features"]["file"], manifest["features"])) is not None:
        bad.append(why)
    if bad:
        raise SnapshotError(f"snapshot {path} does not match its manifest: {', '.join(bad)}")
    if manifest["snapshot_id"] != snapshot_id(manifest["files"], manifest["as_of"]):
        raise SnapshotError(f"snapshot {path}: snapshot_id does not match its files")
    return Snapshot(path, manifest)
