"""Gap repair: re-fetch exactly the days staging misses, sanitize them, keep them apart.

Ingestion fetches wide windows, and some sources lose days in wide requests that a narrow
request serves (the sim's `healable_gap`; exchanges that page or rate-limit the same way).
The `repair` stage owns its own layer, so DVC keeps one owner per path and the staged bars are
never modified in place:

    data/staging/repairs/{EXCHANGE}_{SYMBOL}_1d.parquet/            only the healed bars (OHLCV)
    data/staging/repairs/quarantine/{EXCHANGE}_{SYMBOL}_1d.parquet/ what the gates removed from them
    data/staging/repairs/_repair_log.json                           what was tried, healed, left
    data/staging/.repair.lock                                       one repair at a time

For every symbol whose staged series has runs of missing days longer than `data.max_gap_days`
(the gaps ingestion records; tables are yearly fragments, see `quantlake.layer`), a run asks the source for exactly the days still missing in each
gap (never the whole history), sanitizes them with the ingestion rules against the stored bars
around the gap (so the contamination rule sees the level the gap sits in), and keeps the bars
inside the gap. Reading bars for anyone else is `read_bars`: staging merged with repairs.

Policy, all keyed on `data.as_of` (never the wall clock, so re-runs are deterministic):

* a gap with no missing day left is ``healed`` and never fetched again;
* a gap tried with nothing (``unrepairable``) or not everything (``partial``) served is tried
  again only once `data.as_of` is `repair.retry_after_days` past its `last_tried`;
* days of an exchange-wide outage (`outages.py`) are not asked for, symbol by symbol: they are
  reported once in the log's ``outages``; a gap made only of such days is ``outage``;
* a run fetches at most `repair.max_fills` windows, and a symbol stops asking once it has spent
  `repair.symbol_budget_s` seconds; what is left is ``pending`` and goes first next time;
* a source error for one symbol is logged (``last_error``) and the other symbols go on.

Gap status is derived from the files (which days the repairs hold), so a crash between a bar
file and the log loses nothing but an attempt counter.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, SCHEMA_VERSION, ContractError, SymbolId, coerce_bars, date_to_ms, empty_bars, find_gaps, ms_to_date, parse_date
from ..lakehouse import Layers, drift_rows, merged_bars
from ..parallel import iter_ordered
from ..params import DataParams, RepairParams, coerce_section
from ..sources.base import Source, SourceError
from ..layer import LayerError, table_digest
from ..storage import atomic_write_bytes, dumps_json, file_lock, read_json, sha256_bytes, sha256_file
from .outages import detect_exchange_outages, outage_day_set
from .quality import QualityRules, empty_quarantine, sanitize, sort_quarantine
from .staging import StagingStore, bars_layer, quarantine_frame, quarantine_layer

REPAIR_LOG = "_repair_log.json"
_NO_BARS = empty_bars()
READ_CHUNK = 32  # symbols a worker reads per task
QUARANTINE_SUBDIR = "quarantine"
GAP_STATUSES = ("healed", "partial", "unrepairable", "pending", "outage")
RETRIED = frozenset({"partial", "unrepairable"})


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RepairConfig:
    """What repair needs of the `data` and `repair` sections (defaults and checks live there)."""

    as_of: dt.date
    max_gap_days: int = DataParams.max_gap_days
    max_fills: int = RepairParams.max_fills
    symbol_budget_s: float = RepairParams.symbol_budget_s
    retry_after_days: int = RepairParams.retry_after_days
    outage_min_symbols: int = RepairParams.outage_min_symbols
    workers: int = DataParams.workers
    processes: int = DataParams.processes  # processes reading the staged tables (0 = one per core)
    rules: QualityRules = field(default_factory=QualityRules)

    @classmethod
    def from_params(cls, data: DataParams, repair: RepairParams | None = None) -> "RepairConfig":
        data, repair = coerce_section(DataParams, data), coerce_section(RepairParams, repair or {})
        return cls(
            as_of=data.require_as_of(),
            max_gap_days=data.max_gap_days,
            max_fills=repair.max_fills,
            symbol_budget_s=repair.symbol_budget_s,
            retry_after_days=repair.retry_after_days,
            outage_min_symbols=repair.outage_min_symbols,
            workers=data.workers,
            processes=data.processes,
            rules=data.rules,
        )


# --------------------------------------------------------------------------- pure core: merging


# --------------------------------------------------------------------------- pure core: planning


def _day(iso: str) -> int:
    return date_to_ms(parse_date(iso)) // DAY_MS


def _iso(day: int) -> str:
    return ms_to_date(int(day) * DAY_MS).isoformat()


def day_runs(days: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted day numbers grouped into runs of consecutive days, as (first, last)."""
    arr = np.unique(np.fromiter(days, dtype="int64"))
    if arr.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(arr) != 1)
    return list(zip(np.r_[arr[0], arr[breaks + 1]].tolist(), np.r_[arr[breaks], arr[-1]].tolist()))


@dataclass(frozen=True)
class GapState:
    """A staged gap seen against the repairs and the outages."""

    first: int  # day numbers, inclusive
    last: int
    filled: frozenset[int]  # days the repairs hold
    outage: frozenset[int]  # exchange-wide outage days
    missing: tuple[int, ...]  # days still to ask for

    @property
    def key(self) -> tuple[str, str]:
        return _iso(self.first), _iso(self.last)


def gap_state(gap: list[str], present: set[int], repaired: set[int], outage_days: set[int]) -> GapState:
    first, last = _day(gap[0]), _day(gap[1])
    days = range(first, last + 1)
    return GapState(
        first,
        last,
        frozenset(d for d in days if d in repaired),
        frozenset(d for d in days if d in outage_days),
        tuple(d for d in days if d not in present and d not in outage_days),
    )


def gap_status(g: GapState, attempts: int) -> str:
    if not g.missing:
        return "healed" if g.filled else "outage"
    if attempts == 0:
        return "pending"
    return "partial" if g.filled else "unrepairable"


def due_for_retry(record: dict | None, as_of: dt.date, retry_after_days: int) -> bool:
    """Whether a gap with `record` (its previous log entry) may be asked for again at `as_of`."""
    if not record or record.get("status") not in RETRIED or not record.get("last_tried"):
        return True
    return (as_of - parse_date(record["last_tried"])).days >= retry_after_days


@dataclass(frozen=True)
class Window:
    symbol: str
    gap: tuple[str, str]
    start: dt.date
    end: dt.date


def plan_windows(candidates: list[tuple[str, GapState, dict | None]], max_fills: int) -> list[Window]:
    """Windows to fetch this run, at most `max_fills`, gaps never tried first, then the oldest tried.

    `candidates` are the (symbol, gap, previous record) that are due; each gap asks for the runs
    of its missing days.
    """

    def priority(c: tuple[str, GapState, dict | None]):
        sym, g, rec = c
        tried = bool(rec and rec.get("attempts"))
        return (tried, (rec or {}).get("last_tried") or "", sym, g.first)

    out: list[Window] = []
    for sym, g, _ in sorted(candidates, key=priority):
        for a, b in day_runs(g.missing):
            if len(out) >= max_fills:
                return out
            out.append(Window(sym, g.key, ms_to_date(a * DAY_MS), ms_to_date(b * DAY_MS)))
    return out


# --------------------------------------------------------------------------- pure core: healing


def heal_bars(context: pd.DataFrame, fetched: pd.DataFrame, windows: list[tuple[dt.date, dt.date]], *, symbol: str, as_of: dt.date, rules: QualityRules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(healed bars, quarantine events) for the `windows` a source was asked for.

    `context` is the symbol's stored bars around the windows (they already passed the gates and
    come first, so they win any duplicate); `fetched` is what the source served. Only bars and
    events inside the windows are returned: the stored bars are not this run's to judge again.
    """
    fetched = coerce_bars(fetched, where=f"{symbol} re-fetched bars")
    inside = _in_windows(fetched["timestamp"].to_numpy(), windows) & ~fetched["timestamp"].isin(context["timestamp"]).to_numpy()
    raw = pd.concat([coerce_bars(context), fetched[inside]], ignore_index=True)
    result = sanitize(raw, symbol=symbol, as_of=as_of, rules=rules)
    new_days = set(fetched.loc[inside, "timestamp"].tolist())
    bars = result.bars[result.bars["timestamp"].isin(new_days)].reset_index(drop=True)
    q = result.quarantine
    events = q[q["timestamp"].isin(new_days)].reset_index(drop=True)
    return bars, events


def _in_windows(ts: np.ndarray, windows: list[tuple[dt.date, dt.date]]) -> np.ndarray:
    mask = np.zeros(len(ts), dtype=bool)
    for a, b in windows:
        mask |= (ts >= date_to_ms(a)) & (ts <= date_to_ms(b))
    return mask


def context_bars(bars: pd.DataFrame, windows: list[tuple[dt.date, dt.date]], days: int) -> pd.DataFrame:
    """The stored bars within `days` calendar days of any window."""
    widened = [(a - dt.timedelta(days=days), b + dt.timedelta(days=days)) for a, b in windows]
    return bars[_in_windows(bars["timestamp"].to_numpy(), widened)].reset_index(drop=True)


# --------------------------------------------------------------------------- the repairs layer


@dataclass
class RepairLayer:
    """Tables of `data/staging/repairs/` (see module docstring): two `Layer`s and the log."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.bars = bars_layer(self.root)
        self.quarantine = quarantine_layer(self.root / QUARANTINE_SUBDIR)

    @property
    def log_path(self) -> Path:
        return self.root / REPAIR_LOG

    @property
    def lock_path(self) -> Path:
        return self.root.parent / ".repair.lock"

    def bars_path(self, sid: SymbolId) -> Path:
        return self.bars.path(sid.filename)

    def quarantine_path(self, sid: SymbolId) -> Path:
        return self.quarantine.path(sid.filename)

    def read_bars(self, sid: SymbolId) -> pd.DataFrame:
        bars = self.bars.read(sid.filename)
        return _NO_BARS.copy() if bars is None else bars  # most symbols: a copy, not a conversion

    def read_quarantine(self, sid: SymbolId) -> pd.DataFrame:
        q = self.quarantine.read(sid.filename)
        return empty_quarantine() if q is None else q

    def symbols(self) -> list[SymbolId]:
        return [SymbolId.from_filename(name) for name in self.bars.names()]

    def load_log(self) -> dict:
        return load_repair_log(self.root)

    def remove_temp_files(self) -> None:
        self.bars.remove_temp_files()
        self.quarantine.remove_temp_files()

    def write_bars(self, sid: SymbolId, bars: pd.DataFrame) -> str | None:
        """Write (or remove, when empty) a symbol's healed bars; only the fragments that change."""
        frags = self.bars.write(sid.filename, bars)
        return table_digest(frags) if frags else None

    def write_quarantine(self, sid: SymbolId, q: pd.DataFrame) -> str | None:
        frags = self.quarantine.write(sid.filename, quarantine_frame(q) if len(q) else q)
        return table_digest(frags) if frags else None

    def remove(self, sid: SymbolId) -> None:
        self.bars.remove(sid.filename)
        self.quarantine.remove(sid.filename)

    def write_log(self, doc: dict) -> None:
        _write_if_changed(self.log_path, dumps_json(doc))
        self.bars.clear_intents()
        self.quarantine.clear_intents()


def _write_if_changed(path: Path, data: bytes | None) -> str | None:
    if data is None:
        path.unlink(missing_ok=True)
        return None
    sha = sha256_bytes(data)
    if not path.exists() or sha256_file(path) != sha:
        atomic_write_bytes(path, data)
    return sha


def load_repair_log(repairs_dir: Path) -> dict:
    """The repair log of a repairs folder; an empty log when repair never ran."""
    path = Path(repairs_dir) / REPAIR_LOG
    if not path.exists():
        return {"schema_version": SCHEMA_VERSION, "as_of": None, "outages": [], "symbols": {}}
    return read_json(path)


# --------------------------------------------------------------------------- the run


@dataclass
class RepairSummary:
    healed: int = 0  # gaps healed by this run
    partial: int = 0  # gaps tried this run, some days still missing
    unrepairable: int = 0  # gaps tried this run, nothing served
    skipped_recent: int = 0  # gaps tried less than retry_after_days ago
    deferred: int = 0  # gaps left for the next run by max_fills or the symbol budget
    already_healed: int = 0
    outages: int = 0
    windows: int = 0  # windows fetched (the source answered)
    source_calls: int = 0
    drift: int = 0  # days where staging now disagrees with a repaired bar (staging kept)
    quarantined: int = 0  # re-fetched bars or values removed by the gates in this run
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> error

    def line(self) -> str:
        return (
            f"repair: {self.healed} healed, {self.partial} partial, {self.unrepairable} unrepairable, "
            f"{self.skipped_recent} waiting to retry, {self.deferred} deferred, {self.already_healed} healed before; "
            f"{self.outages} outage(s), {self.drift} drift, {self.quarantined} quarantined, {len(self.failed)} failed "
            f"({self.windows} windows fetched, {self.source_calls} source calls)"
        )


@dataclass
class _Fetched:
    sid: SymbolId
    done: list[tuple[Window, pd.DataFrame]]
    error: tuple[Window, str] | None
    calls: int


def _fetch_symbol(source: Source, sid: SymbolId, windows: list[Window], budget_s: float, clock: Callable[[], float]) -> _Fetched:
    """Ask for a symbol's windows in order; stop once its budget is spent or on an error."""
    t0 = clock()
    done: list[tuple[Window, pd.DataFrame]] = []
    calls = 0
    for w in windows:
        calls += 1
        try:
            frame = coerce_bars(source.fetch_bars(sid, w.start, w.end), where=f"{sid} {w.start}..{w.end}")
        except (SourceError, ContractError) as exc:
            return _Fetched(sid, done, (w, str(exc)), calls)
        except Exception as exc:  # one bad symbol never sinks the batch
            return _Fetched(sid, done, (w, f"{sid}: {type(exc).__name__}: {exc}"), calls)
        done.append((w, frame))
        if clock() - t0 >= budget_s:
            break  # the windows left wait for the next run
    return _Fetched(sid, done, None, calls)


@dataclass
class _Series:
    """A staged symbol: the days staging holds and its repairs. The staged bars themselves are
    read only for the few symbols that need them (repairs to check for drift, a window to heal):
    reading every table whole was most of a run."""

    table: Path  # the staged bar table
    staged: np.ndarray  # its timestamps (sorted and unique: the contract)
    repairs: pd.DataFrame
    _staging: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def staging(self) -> pd.DataFrame:
        if self._staging is None:
            self._staging = _read_table(self.table)
        return self._staging

    @property
    def merged(self) -> pd.DataFrame:
        return merged_bars(self.staging, self.repairs)

    def timestamps(self) -> np.ndarray:
        """The days of `merged`: staged or repaired."""
        return self.staged if self.repairs.empty else np.union1d(self.staged, self.repairs["timestamp"].to_numpy())

    def days(self) -> tuple[set[int], set[int]]:
        """(present days, repaired days)."""
        rep = set((self.repairs["timestamp"] // DAY_MS).tolist())
        return set((self.staged // DAY_MS).tolist()) | rep, rep


def _read_table(path: Path, columns: list[str] | None = None):
    table = bars_layer(path.parent).read_table(path.name, columns)  # whole fragments, no dataset layer
    if table is None:
        raise LayerError(f"{path}: no such table (no Parquet file or fragment)")
    return table.to_pandas() if columns is None else table


def run_repair(
    layers: Layers,
    source: Source,
    data: DataParams,
    repair: RepairParams | None,
    *,
    now_monotonic: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    lock_timeout: float = 3600.0,
) -> RepairSummary:
    """Repair the staged gaps of every symbol (see module docstring); the `quantlake repair` core."""
    cfg = RepairConfig.from_params(data, repair)
    store = StagingStore(layers.staging_bars, layers.quarantine, cfg.max_gap_days)
    layer = RepairLayer(layers.repairs)
    summary = RepairSummary()
    with file_lock(layer.lock_path, timeout=lock_timeout, what="another `quantlake repair`", on_wait=log):
        layer.remove_temp_files()
        layer.bars.migrate()  # tables of the first layout (one file each) become fragments
        layer.quarantine.migrate()
        staged = store.load_state()["symbols"]
        toxic = {s for s, e in staged.items() if e.get("toxic_reason")}
        old_symbols = layer.load_log().get("symbols") or {}
        files = {s: p for s, p in store.bar_files().items() if not (staged.get(s) or {}).get("corrupt")}
        _remove_orphans(layer, files, log)
        series, drift = _load_series(layer, files, summary, log, cfg.processes)

        outages = detect_exchange_outages({sym: s.timestamps() for sym, s in series.items()}, min_symbols=cfg.outage_min_symbols)
        summary.outages = len(outages)
        outage_days = {ex: outage_day_set([o for o in outages if o["exchange"] == ex]) for ex in {o["exchange"] for o in outages}}

        def gaps_of(sym: str) -> list[GapState]:
            gaps = find_gaps(series[sym].staged, cfg.max_gap_days)
            if not gaps:  # most symbols: no day sets to build
                return []
            present, repaired = series[sym].days()
            off = outage_days.get(SymbolId.parse(sym).exchange, set())
            return [gap_state(g, present, repaired, off) for g in gaps]

        # toxic symbols are never published: nothing to repair them for
        before = {sym: gaps_of(sym) for sym in sorted(series) if sym not in toxic}
        due = []
        for sym, found in before.items():
            serves = getattr(source, "exchange", None) in (None, SymbolId.parse(sym).exchange)
            for g in found:
                rec = _old_record(old_symbols, sym, g.key)
                if not g.missing:
                    summary.already_healed += bool(g.filled)  # else all outage days
                elif not serves:
                    continue  # another source's symbol: stays pending
                elif due_for_retry(rec, cfg.as_of, cfg.retry_after_days):
                    due.append((sym, g, rec))
                else:
                    summary.skipped_recent += 1
        windows = plan_windows(due, cfg.max_fills)
        fetched = _fetch_all(source, windows, cfg, now_monotonic)

        for sym in sorted(series):
            f = fetched.get(sym)
            if f is not None:
                summary.source_calls += f.calls
                summary.windows += len(f.done)
                if f.error:
                    summary.failed[sym] = f.error[1]
                    log(f"repair: FAILED {f.error[1]}")
                if f.done:
                    summary.quarantined += _commit_healed(layer, SymbolId.parse(sym), series[sym], f, cfg)
            layer.write_bars(SymbolId.parse(sym), series[sym].repairs)  # also drops days staging now holds

        outcomes = _gap_outcomes(due, fetched)
        symbols_doc = {}
        for sym in sorted(series):
            records = []
            for g in gaps_of(sym) if sym in before else []:
                outcome, error = outcomes.get((sym, g.key), (None, None))
                rec = _next_record(g, _old_record(old_symbols, sym, g.key), outcome, error, cfg.as_of)
                records.append(rec)
                if outcome == "tried":
                    summary.healed += rec["status"] == "healed"
                    summary.partial += rec["status"] == "partial"
                    summary.unrepairable += rec["status"] == "unrepairable"
                    log(f"repair: {sym} gap {rec['from']}..{rec['to']}: {rec['status']} ({rec['filled_days']} day(s) healed, {rec['missing_days']} missing)")
                elif outcome == "deferred":
                    summary.deferred += 1
            entry = _symbol_entry(layer, SymbolId.parse(sym), series[sym], records, (old_symbols.get(sym) or {}).get("drift") or [], drift.get(sym, []))
            if entry is not None:
                symbols_doc[sym] = entry
        layer.write_log({"schema_version": SCHEMA_VERSION, "as_of": cfg.as_of.isoformat(), "outages": outages, "symbols": symbols_doc})
    return summary


def _load_series(layer: RepairLayer, files: dict[str, Path], summary: RepairSummary, log: Callable[[str], None],
                 processes: int) -> tuple[dict[str, "_Series"], dict[str, list[str]]]:
    """Every staged symbol with its repairs (read by `processes` processes); a repaired day
    staging now holds is dropped (staging wins) and reported as drift when the values differ."""
    series, drift = {}, {}
    items = list(files.items())
    # a few dozen symbols a task: one table is ~1 ms of reading, and a task costs about that again
    chunks = [items[i : i + READ_CHUNK] for i in range(0, len(items), READ_CHUNK)]
    read = (one for chunk in iter_ordered(_read_series, chunks, processes, layer.root) for one in chunk)
    for (sym, path), (staged, repairs) in zip(items, read):
        s = series[sym] = _Series(path, staged, _NO_BARS.copy() if repairs is None else repairs)
        if s.repairs.empty:
            continue
        d = drift_rows(s.staging, s.repairs)
        if len(d):
            drift[sym] = [_iso(t // DAY_MS) for t in d["timestamp"]]
            summary.drift += len(d)
            log(f"repair: {sym}: staging now disagrees with {len(d)} repaired bar(s) ({', '.join(drift[sym][:5])}); staging kept")
        s.repairs = s.repairs[~s.repairs["timestamp"].isin(s.staging["timestamp"])].reset_index(drop=True)
    return series, drift


def _read_series(repairs_root: Path, chunk: list[tuple[str, Path]]) -> list[tuple[np.ndarray, pd.DataFrame | None]]:
    """(staged timestamps, repaired bars or None) of each symbol of `chunk`: runs in a worker."""
    repairs = bars_layer(repairs_root)
    return [(_read_table(path, ["timestamp"]).column("timestamp").to_numpy(), repairs.read(SymbolId.parse(sym).filename)) for sym, path in chunk]


def _fetch_all(source: Source, windows: list[Window], cfg: RepairConfig, clock: Callable[[], float]) -> dict[str, _Fetched]:
    by_symbol: dict[str, list[Window]] = {}
    for w in windows:
        by_symbol.setdefault(w.symbol, []).append(w)
    out = {}
    with ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="repair") as pool:
        futures = {pool.submit(_fetch_symbol, source, SymbolId.parse(sym), ws, cfg.symbol_budget_s, clock): sym for sym, ws in by_symbol.items()}
        for fut in as_completed(futures):
            out[futures[fut]] = fut.result()
    return out


def _gap_outcomes(due: list[tuple[str, GapState, dict | None]], fetched: dict[str, _Fetched]) -> dict[tuple[str, tuple[str, str]], tuple[str, str | None]]:
    """Per due gap: ("tried", None) when every run of its missing days was answered, ("error",
    message) when the source failed on it, else ("deferred", None) (max_fills or budget)."""
    answered: dict[tuple[str, tuple[str, str]], int] = {}
    errors: dict[tuple[str, tuple[str, str]], str] = {}
    for sym, f in fetched.items():
        for w, _ in f.done:
            answered[(sym, w.gap)] = answered.get((sym, w.gap), 0) + 1
        if f.error:
            errors[(sym, f.error[0].gap)] = f.error[1]
    out = {}
    for sym, g, _ in due:
        key = (sym, g.key)
        if key in errors:
            out[key] = ("error", errors[key])
        elif answered.get(key, 0) == len(day_runs(g.missing)):
            out[key] = ("tried", None)
        else:
            out[key] = ("deferred", None)
    return out


def _next_record(g: GapState, old: dict | None, outcome: str | None, error: str | None, as_of: dt.date) -> dict:
    """A gap's log record after this run (`outcome` from `_gap_outcomes`, None: not due)."""
    old = old or {}
    attempts, last_tried, last_error = int(old.get("attempts", 0)), old.get("last_tried"), old.get("last_error")
    if outcome == "tried":
        attempts, last_tried, last_error = attempts + 1, as_of.isoformat(), None
    elif outcome == "error":
        last_error = error
    return {
        "from": g.key[0],
        "to": g.key[1],
        "status": gap_status(g, attempts),
        "filled_days": len(g.filled),
        "missing_days": len(g.missing),
        "outage_days": len(g.outage),
        "attempts": attempts,
        "last_tried": last_tried,
        "last_error": last_error,
    }


def _symbol_entry(layer: RepairLayer, sid: SymbolId, s: "_Series", records: list[dict], old_drift: list[str], new_drift: list[str]) -> dict | None:
    """A symbol's log entry; None for a symbol repair has nothing to say about."""
    q = layer.read_quarantine(sid)
    drift = sorted(set(old_drift) | set(new_drift))
    if not (records or len(s.repairs) or drift or len(q)):
        return None
    frags = layer.bars.hashes(sid.filename)
    return {
        "file": sid.filename if frags else None,
        "sha256": table_digest(frags) if frags else None,
        "fragments": frags,
        "rows": int(len(s.repairs)),
        "quarantined": int(len(q)),
        "drift": drift,
        "gaps": records,
    }


def _old_record(old_symbols: dict, sym: str, key: tuple[str, str]) -> dict | None:
    for rec in (old_symbols.get(sym) or {}).get("gaps") or []:
        if (rec.get("from"), rec.get("to")) == key:
            return rec
    return None


def _commit_healed(layer: RepairLayer, sid: SymbolId, s: _Series, f: _Fetched, cfg: RepairConfig) -> int:
    """Sanitize what a symbol's windows served, add it to its repairs; returns new quarantine events."""
    windows = [(w.start, w.end) for w, _ in f.done]
    context = context_bars(s.merged, windows, cfg.rules.max_contamination_days + cfg.rules.stall_days)
    fetched = pd.concat([frame for _, frame in f.done], ignore_index=True)
    bars, events = heal_bars(context, fetched, windows, symbol=str(sid), as_of=cfg.as_of, rules=cfg.rules)
    s.repairs = merged_bars(s.repairs, bars)
    old_q = layer.read_quarantine(sid)
    q = sort_quarantine(pd.concat([old_q, events], ignore_index=True)) if len(events) else old_q
    layer.write_quarantine(sid, q)  # quarantine first: a healed bar is never written without its record
    layer.write_bars(sid, s.repairs)
    return len(q) - len(old_q)


def _remove_orphans(layer: RepairLayer, staged: dict[str, Path], log: Callable[[str], None]) -> None:
    """Repairs of a symbol staging no longer holds would be bars with no series to belong to."""
    for sid in layer.symbols():
        if str(sid) not in staged:
            layer.remove(sid)
            log(f"repair: {sid} is no longer staged; its repairs were removed")
