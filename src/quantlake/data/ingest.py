"""Idempotent ingestion: fetch only what is missing, sanitize, commit atomically.

For every candidate symbol:

* skip it when the stored series already covers `as_of` (and its head already reaches
  `data.start`), or when it was checked for this `as_of` within `data.freshness_hours`;
* otherwise fetch only the missing windows: the tail after the stored end, and the head when
  `data.start` moved earlier than the start it was last fetched from;
* re-sanitize the union of the stored history (clean bars + quarantined originals) and the new
  bars (`quality.sanitize` is a pure function of that union, so any split of a history into
  fetches gives byte-identical files), then commit the quarantine file, the bar file and the
  bookkeeping, in that order, each atomically.

Fetches run in a bounded thread pool of the calling process (`data.workers`: a network
source's rate limiter lives there); the sanitize-and-commit work of each fetched symbol runs
in `data.processes` worker processes (`quantlake.parallel`), each symbol whole in one process,
so the files are the same bytes for any number of processes. Only the calling process writes
the bookkeeping, in symbol order. A symbol that fails is reported and the others go on; a
source whose host cannot be reached at all (`HostUnreachable`) stops the batch after saving
what was committed, and its one-line message is raised. The whole run holds the staging lock,
so two ingest processes are serialized and never lose each other's bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd

from ..contracts import OHLCV_COLUMNS, ContractError, SymbolId, ms_to_date, parse_date
from ..parallel import iter_ordered, resolve_workers
from ..params import DataParams, coerce_section
from ..progress import progress_bar
from ..sources.base import HostUnreachable, Source, SourceError
from ..storage import file_lock
from .quality import NOT_RESTORABLE, QualityRules, restorable_raw, sanitize, sort_quarantine
from .staging import StagingStore, utc_iso


STATE_FLUSH_S = 1.0  # how often, at least, the bookkeeping is rewritten during a run
# ... and at most this share of the run goes into rewriting it: the write grows with the number
# of symbols (3 MB of JSON at 5,000, ~0.4 s), so a fixed period made ingestion quadratic again.
STATE_FLUSH_SHARE = 0.05


def next_flush_after(write_seconds: float) -> float:
    """Seconds to wait before the next bookkeeping write, given what the last one took."""
    return max(STATE_FLUSH_S, write_seconds / STATE_FLUSH_SHARE)


@dataclass(frozen=True)
class IngestConfig:
    """What ingestion needs of the `data` section (defaults and checks live in `DataParams`)."""

    as_of: dt.date
    start: dt.date
    freshness_hours: float = DataParams.freshness_hours
    workers: int = DataParams.workers  # fetch threads
    processes: int = DataParams.processes  # sanitize-and-commit processes (0 = one per core)
    rules: QualityRules = field(default_factory=QualityRules)

    @classmethod
    def from_params(cls, data: DataParams) -> "IngestConfig":
        data = coerce_section(DataParams, data)
        return cls(as_of=data.require_as_of(), start=data.start, freshness_hours=data.freshness_hours, workers=data.workers,
                   processes=data.processes, rules=data.rules)


@dataclass
class SymbolOutcome:
    symbol: str
    action: str  # fetched | skipped | failed
    detail: str = ""
    new_rows: int = 0
    quarantined_new: int = 0
    toxic: bool = False  # a toxic tail was cut (contamination_unisolated)


@dataclass
class IngestSummary:
    outcomes: list[SymbolOutcome]
    source_calls: int = 0

    def count(self, action: str) -> int:
        return sum(o.action == action for o in self.outcomes)

    @property
    def failed(self) -> list[SymbolOutcome]:
        return [o for o in self.outcomes if o.action == "failed"]

    def line(self) -> str:
        q = sum(o.quarantined_new for o in self.outcomes)
        toxic = sum(o.toxic for o in self.outcomes)
        return (
            f"ingest: {self.count('fetched')} fetched, {self.count('skipped')} skipped, "
            f"{q} quarantined, {toxic} with a toxic tail, {self.count('failed')} failed "
            f"({len(self.outcomes)} symbols, {self.source_calls} source calls)"
        )


def plan_windows(entry: dict | None, cfg: IngestConfig, now: dt.datetime) -> list[tuple[dt.date, dt.date]]:
    """The (start, end) windows to fetch for a symbol; empty means skip."""
    if not entry or not entry.get("end_date"):
        # never fetched, or fetched and found empty: ask again unless that check is fresh
        empty_checked = entry and entry.get("file") is None and entry.get("requested_start")
        if empty_checked and parse_date(entry["requested_start"]) <= cfg.start and _checked_recently(entry, cfg, now):
            return []
        return [(cfg.start, cfg.as_of)]
    windows = []
    fetched_from = parse_date(entry.get("requested_start") or entry["start_date"])
    if cfg.start < fetched_from:
        windows.append((cfg.start, fetched_from - dt.timedelta(days=1)))
    end = parse_date(entry["end_date"])
    if end < cfg.as_of and not _checked_recently(entry, cfg, now):
        windows.append((end + dt.timedelta(days=1), cfg.as_of))
    return windows


def _checked_recently(entry: dict, cfg: IngestConfig, now: dt.datetime) -> bool:
    checked = entry.get("last_checked")
    checked_as_of = entry.get("checked_as_of")
    if not checked or not checked_as_of or parse_date(checked_as_of) < cfg.as_of:
        return False
    age = now - dt.datetime.fromisoformat(checked.replace("Z", "+00:00"))
    return age.total_seconds() < cfg.freshness_hours * 3600


@dataclass(frozen=True)
class _Job:
    """One symbol for a commit worker: what was fetched (or why it failed) and its bookkeeping."""

    sid: SymbolId
    windows: list[tuple[dt.date, dt.date]]
    frames: list[pd.DataFrame]
    entry: dict  # the symbol's bookkeeping before this run ({} when new)
    failure: str | None = None  # the fetch failed: the outcome's detail


@dataclass(frozen=True)
class _CommitContext:
    """What every commit worker shares (small: it travels to each worker once)."""

    bars_dir: Path
    quarantine_dir: Path
    max_gap_days: int
    cfg: IngestConfig
    now: dt.datetime
    source_name: str


class _Fetcher:
    """The planned fetches as `_Job`s in plan order, `ahead` of them in flight in a thread pool.

    On `HostUnreachable` the fetches not started are cancelled and the ones already served are
    still handed over; the error is kept in `unreachable` for the caller to raise at the end.
    """

    def __init__(self, source: Source, todo: list[tuple[SymbolId, list[tuple[dt.date, dt.date]]]], state: dict, workers: int):
        self.source, self.todo, self.state, self.workers = source, todo, state, workers
        self.unreachable: HostUnreachable | None = None

    def jobs(self) -> Iterator[_Job]:
        plan = iter(self.todo)
        pending: deque[tuple[SymbolId, list, Future]] = deque()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ingest") as pool:

            def submit(count: int) -> None:
                for sid, windows in itertools.islice(plan, count if self.unreachable is None else 0):
                    pending.append((sid, windows, pool.submit(_fetch, self.source, sid, windows)))

            submit(4 * self.workers)
            while pending:
                sid, windows, fut = pending.popleft()
                if fut.cancelled():
                    continue
                entry = dict(self.state["symbols"].get(str(sid)) or {})
                try:
                    frames = fut.result()
                except HostUnreachable as exc:  # every other symbol would fail the same way
                    self.unreachable = self.unreachable or exc
                    for _, _, other in pending:
                        other.cancel()
                    continue
                except (SourceError, ContractError) as exc:
                    yield _Job(sid, windows, [], entry, failure=str(exc))
                except Exception as exc:  # one bad symbol never sinks the batch
                    yield _Job(sid, windows, [], entry, failure=f"{sid}: {type(exc).__name__}: {exc}")
                else:
                    yield _Job(sid, windows, frames, entry)
                submit(1)


def _fetch(source: Source, sid: SymbolId, windows: list[tuple[dt.date, dt.date]]) -> list[pd.DataFrame]:
    return [source.fetch_bars(sid, a, b) for a, b in windows]


def ingest_symbols(
    symbols: Iterable[SymbolId],
    source: Source,
    store: StagingStore,
    cfg: IngestConfig,
    *,
    now: dt.datetime,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    progress: bool | None = None,
    lock_timeout: float = 3600.0,
) -> IngestSummary:
    """Bring every symbol's staged series up to `cfg.as_of` (see module docstring)."""
    symbols = sorted(set(symbols))
    with file_lock(store.lock_path, timeout=lock_timeout, what="another `quantlake ingest`", on_wait=log):
        store.remove_temp_files()
        state = store.load_state(heal=True)
        if store.drop_other_sources(state, source.name) or state["changed"]:
            store.write_state(state)  # healed now; and the Golden Copy holds only this source's symbols
        outcomes: dict[str, SymbolOutcome] = {}
        todo = []
        for sid in symbols:
            windows = plan_windows(state["symbols"].get(str(sid)), cfg, now)
            if windows:
                todo.append((sid, windows))
            else:
                outcomes[str(sid)] = SymbolOutcome(str(sid), "skipped", "fresh")
        calls = sum(len(w) for _, w in todo)
        bar = progress_bar(len(todo), "ingest", "symbols", progress)
        fetcher = _Fetcher(source, todo, state, cfg.workers)
        context = _CommitContext(store.bars_dir, store.quarantine_dir, store.max_gap_days, cfg, now, source.name)
        processes = max(1, min(resolve_workers(cfg.processes), len(todo)))  # no pool for a few symbols' worth
        last_flush, flush_every = time.monotonic(), STATE_FLUSH_S
        settled: list[str] = []  # symbols recorded since the last bookkeeping write
        for outcome, entry in iter_ordered(_commit_job, fetcher.jobs(), processes, context):
            outcomes[outcome.symbol] = outcome
            if entry is not None:
                state["symbols"][outcome.symbol] = entry
            settled.append(outcome.symbol)
            # The bookkeeping is rewritten in batches, not per symbol: a per-symbol rewrite
            # of a 5,000-entry file made ingestion quadratic, and so did a fixed period
            # (writes ~ time ~ N, each ~ N); the period grows with the write's cost, so at
            # most STATE_FLUSH_SHARE of the run goes into it. Files committed after the last
            # write are reconciled by `load_state` (intent records); a write drops only the
            # intent records of the symbols it holds, never those of commits still running.
            if time.monotonic() - last_flush >= flush_every:
                began = time.monotonic()
                store.write_state(state, settled=settled)
                settled = []
                last_flush = time.monotonic()
                flush_every = next_flush_after(last_flush - began)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(outcome.symbol)
            elif outcome.action == "failed":
                log(f"ingest: FAILED {outcome.detail}")
            else:
                log(f"ingest: {outcome.symbol} {outcome.detail}")
        if any(o.action == "fetched" for o in outcomes.values()):
            store.write_state(state)
        if bar is not None:
            bar.close()
        if fetcher.unreachable is not None:
            raise fetcher.unreachable
        if bar is not None:
            for o in outcomes.values():
                if o.action == "failed":
                    log(f"ingest: FAILED {o.detail}")
    return IngestSummary([outcomes[str(s)] for s in symbols], source_calls=calls)


def _commit_job(context: _CommitContext, job: _Job) -> tuple[SymbolOutcome, dict | None]:
    """(outcome, new bookkeeping entry or None) of one symbol: runs in a commit worker."""
    if job.failure is not None:
        return SymbolOutcome(str(job.sid), "failed", job.failure), None
    store = StagingStore(context.bars_dir, context.quarantine_dir, max_gap_days=context.max_gap_days)
    try:
        return _commit(job, store, context.cfg, context.now, context.source_name)
    except (SourceError, ContractError) as exc:
        return SymbolOutcome(str(job.sid), "failed", str(exc)), None
    except Exception as exc:  # one bad symbol never sinks the batch
        return SymbolOutcome(str(job.sid), "failed", f"{job.sid}: {type(exc).__name__}: {exc}"), None


def _commit(job: _Job, store: StagingStore, cfg: IngestConfig, now: dt.datetime, source_name: str) -> tuple[SymbolOutcome, dict]:
    """Re-sanitize a symbol's stored history with what was fetched; write its tables."""
    sid, old_entry = job.sid, job.entry
    stored = store.read_bars(sid)
    old_q = store.read_quarantine(sid)
    history = [] if stored is None and old_q.empty else [restorable_raw(stored if stored is not None else pd.DataFrame(columns=list(OHLCV_COLUMNS)), old_q)]
    parts = [*history, *job.frames]
    new = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(OHLCV_COLUMNS))
    # A head extension asked with an earlier as_of must not cut the stored tail, nor turn a
    # quarantined bar that passed the not_closed check when it was stored (a toxic tail, say)
    # into a `not_closed` one.
    seen = [parse_date(old_entry["end_date"])] if old_entry.get("end_date") else []
    passed = old_q.loc[~old_q["rule"].isin(NOT_RESTORABLE | {"misaligned_timestamp"}), "timestamp"] if len(old_q) else ()
    if len(passed):
        seen.append(ms_to_date(int(passed.max())))
    as_of = max([cfg.as_of, *seen])
    result = sanitize(new, symbol=str(sid), as_of=as_of, rules=cfg.rules)
    kept_old = old_q[old_q["rule"].isin(NOT_RESTORABLE)] if len(old_q) else old_q
    quarantine = sort_quarantine(pd.concat([result.quarantine, kept_old], ignore_index=True)) if len(kept_old) else result.quarantine

    starts = [w[0] for w in job.windows]
    requested_start = min([cfg.start, *starts] + ([parse_date(old_entry["requested_start"])] if old_entry.get("requested_start") else []))
    entry = dict(old_entry)
    entry.update(
        {
            "source": source_name,
            "last_checked": utc_iso(now),
            "checked_as_of": cfg.as_of.isoformat(),
            "requested_start": requested_start.isoformat(),
            "toxic_from": None if result.toxic_from is None else result.toxic_from.isoformat(),
        }
    )
    entry.pop("toxic_reason", None)  # bookkeeping of earlier versions: a toxic tail no longer voids the past
    entry = store.commit(sid, result.bars, quarantine, entry, updated_at=utc_iso(now))
    new_rows = len(result.bars) - (0 if stored is None else len(stored))
    q_new = len(quarantine) - len(old_q)
    detail = f"+{new_rows} bars" + (f", {q_new} quarantined" if q_new else "") + (f" (toxic from {result.toxic_from})" if result.toxic_from else "")
    outcome = SymbolOutcome(str(sid), "fetched", detail, new_rows=new_rows, quarantined_new=max(q_new, 0), toxic=result.toxic_from is not None)
    return outcome, entry


def read_candidates(path) -> list[SymbolId]:
    from ..storage import read_json

    doc = read_json(path)
    out = []
    for i, c in enumerate(doc.get("candidates", [])):
        out.append(SymbolId.parse(c.get("symbol"), where=f"{path} candidates[{i}].symbol"))
    return out
