"""The feature store stage: point-in-time technical ratings, kept incrementally in one long table.

Layout (owned by the `features` stage, `persist: true`):

    data/staging/features/tv_technicals_1d.parquet/{YYYY-MM}.parquet   the long table
        (`timestamp, symbol, recommend_all, ...`), one fragment per month holding every symbol
    data/staging/features/_features_state.json   per symbol: sha256 of each yearly fragment of
        the bars the rows were computed from; the table's fragment hashes

Each row depends only on the bars at or before it, so when a symbol's bars change from one
fragment on (a new day changes only the open quarter), only its rows from there on are replaced,
and only the month fragments from there on are rebuilt; a fragment whose bytes did not change
is not rewritten, so a closed month keeps its bytes (and its DVC cache object) forever. The
gate publishes the certified symbols' rows under the same layout,
`data/lakehouse/features/tv_technicals_1d.parquet/`, linking every month that holds only them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import SCHEMA_VERSION, SymbolId, date_to_ms, parse_date
from ..layer import Layer, key_bounds, period_keys, read_columns
from ..progress import track
from ..storage import atomic_write_bytes, atomic_write_json, link_or_copy, read_json, sha256_bytes, table_to_parquet_bytes
from .staging import bars_layer
from .technicals import LONG_COLUMNS, technical_ratings

STATE_FILE = "_features_state.json"
LONG_FILE = "tv_technicals_1d.parquet"
LONG_SCHEMA = pa.schema([("timestamp", pa.int64()), ("symbol", pa.string())] + [(c, pa.float64()) for c in LONG_COLUMNS[2:]])
FROM_START = "0000-00"  # a dirty key before every month


def features_layer(root: Path) -> Layer:
    """The layer of the long feature table: monthly fragments sorted by (symbol, timestamp)."""
    return Layer(Path(root), LONG_SCHEMA, "month", sort_by=("symbol", "timestamp"))


@dataclass
class FeaturesSummary:
    computed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    recomputed_from: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    months_written: int = 0

    def line(self) -> str:
        return (
            f"features: {len(self.computed)} computed ({len(self.recomputed_from)} with changed history), "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed, {len(self.failed)} failed, "
            f"{self.months_written} month fragment(s) written"
        )


def _load_state(path: Path) -> dict | None:
    try:
        state = read_json(path) if path.exists() else None
    except (OSError, ValueError):
        return None  # rebuilt from the bars: nothing is lost
    return state if isinstance(state, dict) and isinstance(state.get("symbols"), dict) else None


def _month_of(ms: int) -> str:
    return str(period_keys(np.array([ms]), "month")[0])


def _first_changed_year(old: dict[str, str], new: dict[str, str]) -> str | None:
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return changed[0] if changed else None


def run_features(symbols: Iterable[SymbolId], read_bars: Callable[[SymbolId], pd.DataFrame], out_dir: Path, *, progress: bool | None = False) -> FeaturesSummary:
    """Bring the long table to exactly the rows of `symbols` (see module docstring); `progress` as `progress.progress_bar`."""
    layer = features_layer(out_dir)
    layer.root.mkdir(parents=True, exist_ok=True)
    layer.remove_temp_files()
    state_path = layer.root / STATE_FILE
    state = _load_state(state_path)
    rebuild = state is None or "fragments" not in state or layer.is_legacy(LONG_FILE)
    if rebuild:  # no usable bookkeeping, or the first layout (one file per symbol): start over
        for name in layer.names():
            layer.remove(name)
        state = {"schema_version": SCHEMA_VERSION, "symbols": {}, "fragments": {}}
    entries = state["symbols"]
    summary = FeaturesSummary()
    dirty: dict[str, tuple[str, dict[str, pa.Table] | None]] = {}  # symbol -> (first dirty month, rows by month)
    wanted = sorted(set(symbols))
    years = bars_layer(layer.root)  # only for its yearly split of the bars
    for sid in track(wanted, len(wanted), "features", "symbols", progress):
        sym = str(sid)
        try:
            bars = read_bars(sid)
            hashes = {k: sha256_bytes(v) for k, v in years.encode(bars).items()}
            old = entries.get(sym) or {}
            first = _first_changed_year(old.get("bars_fragments") or {}, hashes)
            if first is None:
                summary.unchanged.append(sym)
                continue
            frame = technical_ratings(bars, where=sym)
            frame.insert(1, "symbol", sym)
            dirty[sym] = (_month_of(key_bounds(first)[0]) if old else FROM_START, _months_of(frame))
            if old and old.get("bars_fragments") and first < max(old["bars_fragments"]):
                summary.recomputed_from[sym] = int(key_bounds(first)[0])
            entries[sym] = {"bars_fragments": hashes, "rows": int(len(frame))}
            summary.computed.append(sym)
        except Exception as exc:  # one bad symbol never sinks the batch
            summary.failed[sym] = f"{sym}: {type(exc).__name__}: {exc}"
    for sym in sorted(set(entries) - {str(s) for s in wanted}):
        dirty[sym] = (FROM_START, None)  # no longer asked for: its rows leave the table
        del entries[sym]
        summary.removed.append(sym)
    if dirty or rebuild:
        state["fragments"], summary.months_written = _rebuild_months(layer, dirty, state.get("fragments") or {})
        atomic_write_json(state_path, {"schema_version": SCHEMA_VERSION, "symbols": dict(sorted(entries.items())), "fragments": state["fragments"]})
        layer.clear_intents()
    return summary


def _months_of(frame: pd.DataFrame) -> dict[str, pa.Table]:
    """One symbol's rows as Arrow tables by month (zero-copy slices of one conversion).

    Converted as `Layer.encode` converts (`from_pandas`: NaN becomes null), once per symbol: the
    pandas frame is dropped, and a month is then a slice, not a boolean-mask copy per month.
    """
    if frame.empty:
        return {}
    frame = frame.sort_values("timestamp", kind="stable")
    table = pa.Table.from_pandas(frame[list(LONG_SCHEMA.names)], schema=LONG_SCHEMA, preserve_index=False).combine_chunks()
    keys = period_keys(frame["timestamp"].to_numpy(), "month")
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1  # sorted by timestamp: each month is one run
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(keys)]
    return {str(keys[a]): table.slice(int(a), int(b - a)) for a, b in zip(starts, stops)}


def _encode_month(layer: Layer, parts: list[pa.Table]) -> dict[str, bytes]:
    """`layer.encode` of one month's rows given as Arrow tables (same order, same bytes)."""
    table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
    if table.num_rows == 0:
        return {}
    order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in layer.sort_by])
    table = table.take(order).combine_chunks()
    (key,) = set(period_keys(table.column("timestamp").to_numpy(), layer.period).tolist())
    return {key: table_to_parquet_bytes(table)}


def _rebuild_months(layer: Layer, dirty: dict[str, tuple[str, dict[str, pa.Table] | None]], known: dict[str, str]) -> tuple[dict[str, str], int]:
    """Rewrite the month fragments the dirty symbols touch; returns (fragment hashes, written).

    One month at a time: the kept rows of the month (read as Arrow, the dirty symbols'
    filtered out) and the dirty symbols' new rows of that month (slices) are sorted by
    (symbol, timestamp) and encoded as `Layer.encode` would; then one commit.
    """
    if not dirty:
        return known, 0
    start = min(first for first, _ in dirty.values())
    new_rows: dict[str, list[pa.Table]] = {}
    for first, months in dirty.values():
        for key, part in (months or {}).items():
            if key >= first:
                new_rows.setdefault(key, []).append(part)
    existing = [k for k in layer.fragments(LONG_FILE) if k >= start]
    months = sorted(set(existing) | set(new_rows))
    parts: dict[str, bytes] = {}
    for month in months:
        lo, hi = key_bounds(month)
        keep = []
        if month in existing:
            old = layer.read_table(LONG_FILE, start=lo, end=hi)
            if old is not None and old.num_rows:
                replaced = pa.array(sorted(s for s, (first, _) in dirty.items() if first <= month), pa.string())
                keep.append(old.filter(pc.invert(pc.is_in(old.column("symbol"), value_set=replaced))))
        frame = keep + new_rows.pop(month, [])
        if frame:
            parts.update(_encode_month(layer, frame))
    before = dict(known)
    hashes = layer.commit(LONG_FILE, parts, known=known, only=months)
    return hashes, sum(before.get(k) != v for k, v in hashes.items())


def publish_features(features_dir: Path, tmp: Path, certified: dict) -> dict:
    """Publish the certified symbols' feature rows into `tmp/features/` (same layout).

    Every certified symbol's rows must cover exactly its published bars; rows that do not are
    not point in time and none of that symbol's rows are published. A month fragment that
    holds only publishable symbols is linked; the others are written with those rows only.

    The index (symbol, timestamp) is read once per fragment with Arrow and grouped once
    (dictionary codes, one stable sort): no per-month scan of the whole index, no
    per-symbol scan (both grew with months x symbols).
    """
    layer = features_layer(features_dir)
    out = tmp / "features" / LONG_FILE
    out.mkdir(parents=True)
    fragments = layer.fragments(LONG_FILE)
    if fragments:
        parts = {key: read_columns(path, ["symbol", "timestamp"]) for key, path in fragments.items()}
    else:  # no table, or the first layout (one file): nothing to link, only the checks
        whole = layer.read_table(LONG_FILE, columns=["symbol", "timestamp"])
        if whole is None:
            return {"rows": 0, "symbols": 0, "problems": {s: "no feature rows" for s in sorted(certified["symbols"])}}
        parts = {None: whole}
    as_of_ms = date_to_ms(parse_date(certified["as_of"]))  # rows after as_of are not in this version
    held, rows_in, later = {}, {}, set()
    kept_symbols, kept_stamps = [], []
    for key, part in parts.items():
        ts = part.column("timestamp").to_numpy()
        symbols = part.column("symbol").combine_chunks()
        keep = ts <= as_of_ms
        if not keep.all():
            later.add(key)
            symbols, ts = symbols.filter(pa.array(keep)), ts[keep]
        held[key] = set(pc.unique(symbols).to_pylist())
        rows_in[key] = int(ts.size)
        kept_symbols.append(symbols)
        kept_stamps.append(ts)
    stamps = np.concatenate(kept_stamps)
    encoded = pc.dictionary_encode(pa.concat_arrays(kept_symbols))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")  # each symbol's rows in file order: by month, then by time
    ends = np.cumsum(np.bincount(codes, minlength=len(encoded.dictionary)))
    positions = {sym: order[end - n: end] for sym, end, n in zip(encoded.dictionary.to_pylist(), ends.tolist(), np.diff(np.r_[0, ends]).tolist())}
    problems = {}
    for sym, entry in certified["symbols"].items():
        rows = stamps[positions[sym]] if sym in positions else stamps[:0]
        bars_ts = read_columns(tmp / entry["file"], ["timestamp"]).column("timestamp").to_numpy()
        if rows.size == 0:
            problems[sym] = "no feature rows"
        elif rows.size != bars_ts.size or not (rows == bars_ts).all():
            problems[sym] = f"feature rows ({rows.size}) do not match the bars ({bars_ts.size})"
    allowed = set(certified["symbols"]) - set(problems)
    rows_out = 0
    for key, path in fragments.items():
        if held[key] <= allowed and key not in later:
            link_or_copy(path, out / path.name)
            rows_out += rows_in[key]
            continue
        lo, hi = key_bounds(key)
        if lo > as_of_ms:
            continue
        hi = min(hi, as_of_ms)
        frame = layer.read(LONG_FILE, filters=[("symbol", "in", sorted(allowed))], start=lo, end=hi) if allowed else None
        if frame is not None and len(frame):
            (data,) = layer.encode(frame).values()
            atomic_write_bytes(out / path.name, data)
            rows_out += len(frame)
    return {"rows": int(rows_out), "symbols": len(allowed & set(positions)), "problems": dict(sorted(problems.items()))}
