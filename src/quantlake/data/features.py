"""The feature store stage: point-in-time technical ratings, kept incrementally in one long table.

Layout (owned by the `features` stage, `persist: true`):

    data/staging/features/tv_technicals_1d.parquet/{YYYY-MM}.parquet   the long table
        (`timestamp, symbol, recommend_all, ...`), one fragment per month holding every symbol
    data/staging/features/_features_state.json   per symbol: sha256 of each fragment of the
        staged and repaired bars its rows were computed from; the table's fragment hashes

Each row depends only on the bars at or before it, so when a symbol's bars change from one
fragment on (a new day changes only the open quarter), only its rows from there on are replaced,
and only the month fragments from there on are rebuilt; a fragment whose bytes did not change
is not rewritten, so a closed month keeps its bytes (and its DVC cache object) forever. The
symbols are computed and the months encoded by a process pool through a spill folder
(`feature_months.py`): memory stays bounded by a chunk of symbols or a month. The
gate publishes the certified symbols' rows under the same layout,
`data/lakehouse/features/tv_technicals_1d.parquet/`, linking every month that holds only them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import SCHEMA_VERSION, SymbolId, date_to_ms, parse_date
from ..lakehouse import Layers, read_bars
from ..layer import Layer, key_bounds, read_columns, table_hashes
from ..parallel import iter_ordered, resolve_workers
from ..progress import progress_bar
from ..storage import atomic_write_bytes, atomic_write_json, link_or_copy, read_json
from .technicals import RATING_COLUMNS
from .feature_months import (ALL_ROWS, LONG_FILE, LONG_SCHEMA, ComputeInputs, MonthInputs, chunks, clear_spill, compute_chunk,
                             encode_month, make_spill, spill_index)

STATE_FILE = "_features_state.json"
DICTIONARY_COLUMNS = ("timestamp", "symbol", *RATING_COLUMNS)  # a month: ~30 days, the symbols, ratings in steps of 1/26


def features_layer(root: Path) -> Layer:
    """The layer of the long feature table: monthly fragments sorted by (symbol, timestamp).

    Only the few-valued columns are dictionary-encoded: the indicator values are distinct
    floats, where a dictionary saves nothing and trying one made the write 10x slower.
    """
    return Layer(Path(root), LONG_SCHEMA, "month", sort_by=("symbol", "timestamp"), dictionary=DICTIONARY_COLUMNS)


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


def source_hashes(layers: Layers, sid: SymbolId, bars: dict[str, str] | None = None) -> dict[str, str]:
    """{'bars/<key>' | 'repairs/<key>': sha256} of the fragments a symbol's rows are computed from.

    The files' own hashes: an unchanged symbol is told without reading (let alone encoding) its
    bars, and a changed fragment says from which period on its rows must be recomputed. `bars`:
    the staged fragments' hashes when the caller has just verified them on disk.
    """
    bars = table_hashes(layers.staging_bars / sid.filename) if bars is None else bars
    hashes = {f"bars/{k}": v for k, v in bars.items()}
    hashes.update({f"repairs/{k}": v for k, v in table_hashes(layers.repairs / sid.filename).items()})
    return hashes


def first_changed_ms(old: dict[str, str], new: dict[str, str]) -> int | None:
    """The first ms of the earliest fragment that differs (added, changed or dropped); None if none."""
    changed = [k for k in set(old) | set(new) if old.get(k) != new.get(k)]
    return min(key_bounds(k.split("/", 1)[1])[0] for k in changed) if changed else None


def _month_start(ms: int) -> int:
    return int(np.datetime64(int(ms), "ms").astype("datetime64[M]").astype("datetime64[ms]").astype("int64"))


def run_features(symbols: Iterable[SymbolId], layers: Layers, *, processes: int = 0, progress: bool | None = False,
                 bar_hashes: dict[str, dict[str, str]] | None = None) -> FeaturesSummary:
    """Bring the long table to exactly the rows of `symbols` (see module docstring).

    `processes` (`data.processes`; 0 = one per core) compute the symbols and encode the months;
    the table's bytes do not depend on it. `bar_hashes` ({symbol: {key: sha256}}): the staged
    fragments' hashes as the staging bookkeeping just verified them on disk (else hashed here).
    """
    layer = features_layer(layers.features)
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
    replaced_from: dict[str, int] = {}  # symbol -> first ms whose stored rows go (dirty or removed)
    todo, hashes = [], {}
    wanted = sorted({str(s) for s in symbols})
    for sym in wanted:
        try:
            hashes[sym] = source_hashes(layers, SymbolId.parse(sym), (bar_hashes or {}).get(sym))
        except Exception as exc:  # one bad symbol never sinks the batch
            summary.failed[sym] = f"{sym}: {type(exc).__name__}: {exc}"
            continue
        old = (entries.get(sym) or {}).get("sources")  # None: new, or bookkeeping of an earlier version
        first = first_changed_ms(old or {}, hashes[sym])
        if first is None:
            summary.unchanged.append(sym)
            continue
        from_ms = _month_start(first) if old else ALL_ROWS
        if old and first < max((key_bounds(k.split("/", 1)[1])[0] for k in old if k.startswith("bars/")), default=first):
            summary.recomputed_from[sym] = int(first)
        todo.append((sym, from_ms))
    clear_spill(layer)
    try:
        if todo:
            spill = make_spill(layer)
            results, from_of = [], dict(todo)
            bar = progress_bar(len(todo), "features", "symbols", progress)
            for result in iter_ordered(compute_chunk, chunks(todo, resolve_workers(processes)), processes, ComputeInputs(lambda sid: read_bars(layers, sid), spill)):
                results.append(result)
                summary.failed.update(result.failed)
                for sym, rows in result.rows.items():  # a failed symbol keeps its stored rows
                    entries[sym] = {"sources": hashes[sym], "rows": int(rows)}
                    replaced_from[sym] = from_of[sym]
                    summary.computed.append(sym)
                if bar is not None:
                    bar.update(len(result.rows) + len(result.failed))
            if bar is not None:
                bar.close()
        for sym in sorted(set(entries) - set(wanted)):
            replaced_from[sym] = ALL_ROWS  # no longer asked for: its rows leave the table
            del entries[sym]
            summary.removed.append(sym)
        if replaced_from or rebuild:
            spilled = spill_index(results) if todo else {}
            state["fragments"], summary.months_written = _rebuild_months(layer, replaced_from, spilled, state.get("fragments") or {}, processes)
            atomic_write_json(state_path, {"schema_version": SCHEMA_VERSION, "symbols": dict(sorted(entries.items())), "fragments": state["fragments"]})
            layer.clear_intents()
    finally:
        clear_spill(layer)
    summary.computed.sort()
    return summary


def _rebuild_months(layer: Layer, replaced_from: dict[str, int], spilled: dict[str, list[tuple[str, int]]], known: dict[str, str], processes: int) -> tuple[dict[str, str], int]:
    """Rewrite the month fragments the replaced symbols touch; returns (fragment hashes, written).

    Each month (its kept rows, the dirty symbols' new rows from the spill) is encoded by a
    pool task and committed here as it arrives: one month's bytes in memory at a time.
    """
    if not replaced_from:
        return known, 0
    start = min(replaced_from.values())
    existing = [k for k in layer.fragments(LONG_FILE) if key_bounds(k)[1] >= start]
    months = sorted(set(existing) | set(spilled))
    before, hashes = dict(known), dict(known)
    shared = MonthInputs(layer, frozenset(existing), replaced_from, spilled)
    for month, data in iter_ordered(encode_month, months, processes, shared):
        hashes = layer.commit(LONG_FILE, {month: data} if data else {}, known=hashes, only=[month])
    return hashes, sum(before.get(k) != v for k, v in hashes.items())


def publish_features(features_dir: Path, tmp: Path, certified: dict, bar_timestamps: dict[str, np.ndarray] | None = None) -> dict:
    """Publish the certified symbols' feature rows into `tmp/features/` (same layout).

    Every certified symbol's rows must cover exactly its published bars; rows that do not are
    not point in time and none of that symbol's rows are published. A month fragment that
    holds only publishable symbols is linked; the others are written with those rows only.

    The index (symbol, timestamp) is read once per fragment with Arrow and grouped once
    (dictionary codes, one stable sort): no per-month scan of the whole index, no
    per-symbol scan (both grew with months x symbols). `bar_timestamps` ({symbol: the
    published bars' timestamps}) spares reading the bar tables the gate has just read.
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
        if bar_timestamps is not None and sym in bar_timestamps:  # the gate has just read them
            bars_ts = bar_timestamps[sym]
        else:
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
