"""The gate: check every staged file and publish the Golden Copy (`data/lakehouse/`).

Status of a symbol (first that applies):

* ``toxic``: the staged file breaks the OHLCV contract, or it holds no bar (bookkeeping of
  earlier versions may also say ``toxic_reason``). Listed in the catalog; no file in the
  lakehouse.
* ``degraded`` with ``toxic_from``: ingestion could not isolate a contamination that starts on
  ``toxic_from`` (a toxic tail): every bar from that day on is quarantined, the clean history
  before it is published. This wins over ``stale`` (the series stops because its tail is
  toxic, not because the market stopped).
* ``stale``: the last bar is more than `audit.stale_days` days before `as_of` (halted or
  delisted markets, a source that stopped serving the symbol).
* ``degraded``: certified, but a gate removed bars or values (`quarantined` > 0; this includes
  drift: a bar the source served again with other values, kept as first stored), or the series
  has gaps longer than `data.max_gap_days`, or its quality score is below `audit.min_quality`.
* ``ok``: everything else.

Data quality score, in [0, 1]: ``coverage * cleanliness`` where
``coverage = rows / days(start_date..end_date)`` (the share of calendar days that have a bar)
and ``cleanliness = rows / (rows + quarantined)`` (the share of bars no gate had to touch,
counting each quarantine event once). A toxic symbol scores 0.

The lakehouse is published as of `data.as_of`: bars (and feature rows) after it are not part of
that version (`bars_as_of`; staging keeps them when `as_of` moved back), and a symbol with no
bar on or before it is listed under `empty_symbols`, as a fresh run at that day would.

The gate also publishes the point-in-time universe, `universe.parquet` (`data/universe.py`),
computed from the certified bars and the scanner configs of `candidates.json`.

The new lakehouse is built in a temporary folder next to `data/lakehouse/` (staged fragments
hard-linked, not copied, where the filesystem allows; only a fragment that repairs or the
`as_of` cut changed is written anew), every certified table is validated once more, published
files are made read-only, and the folder is swapped into place (its mode follows the umask). If
any certified table would break a contract, nothing is published and the command fails. A run
first finishes a swap a crash interrupted and removes the build folders a killed run left behind.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts import SCHEMA_VERSION, STATUSES, SymbolId, date_to_ms, ms_to_date, parse_date, validate_catalog, validate_ohlcv
from ..layer import table_digest
from ..lakehouse import AUDIT, CATALOG, CERTIFIED, Layers, merged_bars, read_repairs, recover_swap, remove_stale_temp_dirs, swap_dir_into_place
from ..parallel import iter_batched
from ..params import AuditParams, DataParams, coerce_section
from ..storage import atomic_write_bytes, atomic_write_json, dir_mode, file_lock, link_or_copy, make_read_only, sha256_bytes, sha256_file
from .repair import load_repair_log
from .staging import StagingStore, bars_layer, bars_summary
from .universe import UniverseSpec, publish_universe, traded_value_of


class AuditFailure(Exception):
    """A certified file would break a contract: nothing was published."""


@dataclass(frozen=True)
class AuditConfig:
    """What the gate needs of the `data` and `audit` sections (defaults and checks live there)."""

    as_of: dt.date
    max_gap_days: int = DataParams.max_gap_days
    stale_days: int = AuditParams.stale_days
    min_quality: float = AuditParams.min_quality
    certify: tuple[str, ...] = AuditParams.certify
    processes: int = DataParams.processes  # the pool of the per-symbol checks; no result depends on it

    @classmethod
    def from_params(cls, data: DataParams, audit: AuditParams | None = None) -> "AuditConfig":
        data, audit = coerce_section(DataParams, data), coerce_section(AuditParams, audit or {})
        return cls(as_of=data.require_as_of(), max_gap_days=data.max_gap_days, stale_days=audit.stale_days,
                   min_quality=audit.min_quality, certify=audit.certify, processes=data.processes)


def quality_score(rows: int, start_date: str | None, end_date: str | None, quarantined: int) -> float:
    if rows <= 0 or not start_date or not end_date:
        return 0.0
    days = (parse_date(end_date) - parse_date(start_date)).days + 1
    coverage = rows / days
    cleanliness = rows / (rows + quarantined)
    return round(min(1.0, coverage * cleanliness), 6)


def classify(entry: dict, violations: list[str], cfg: AuditConfig) -> tuple[str, list[str]]:
    """(status, reasons) for one staged symbol."""
    if entry.get("toxic_reason"):
        return "toxic", [entry["toxic_reason"]]
    if entry.get("corrupt"):
        return "toxic", [entry["corrupt"]]
    if violations:
        return "toxic", [f"contract violation: {v}" for v in violations[:5]]
    if not entry.get("rows"):
        return "toxic", ["no bar survived the quality gates"]
    reasons = []
    if entry.get("toxic_from"):
        reasons.append(
            f"contamination from {entry['toxic_from']} cannot be isolated: the bars from then on are "
            "quarantined (toxic tail), the clean history before it is kept"
        )
    lag = (cfg.as_of - parse_date(entry["end_date"])).days
    if lag > cfg.stale_days and not reasons:
        return "stale", [f"last bar {entry['end_date']} is {lag} days before as_of {cfg.as_of}"]
    if entry.get("quarantined"):
        reasons.append(f"{entry['quarantined']} quarantined bar(s) or value(s)")
    if entry.get("gaps"):
        reasons.append(f"{len(entry['gaps'])} gap(s) longer than max_gap_days")
    score = quality_score(entry["rows"], entry["start_date"], entry["end_date"], entry.get("quarantined", 0))
    if score < cfg.min_quality:
        reasons.append(f"quality score {score} below {cfg.min_quality}")
    return ("degraded" if reasons else "ok"), reasons


@dataclass
class AuditResult:
    catalog: dict
    certified: dict
    report: dict
    linked: int = 0
    copied: int = 0
    written: int = 0


@dataclass
class _Inspected:
    """One staged symbol as the gate sees it: bookkeeping merged with its repairs."""

    entry: dict  # catalog-ready fields before classification
    violations: list[str]
    written: dict[str, bytes]  # fragments to write (merged with repairs, cut at as_of); the others are linked
    only_after_as_of: bool = False  # staged bars, but none at or before as_of: not in this version


def bars_as_of(bars: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """The bars that belong to the lakehouse as of `as_of`: those that open on or before it.

    Staging may hold later days (after `data.as_of` moved back); they are simply not part of
    this version, and stay staged for a later one. Returns `bars` itself when nothing is cut."""
    keep = bars["timestamp"].to_numpy() <= date_to_ms(as_of)
    return bars if keep.all() else bars.loc[keep].reset_index(drop=True)


def inspect_symbol(layers: Layers, sym: str, entry: dict, repair_entry: dict | None, cfg: AuditConfig) -> _Inspected:
    sid = SymbolId.parse(sym, where="ingest bookkeeping")
    if entry.get("corrupt"):  # toxic: nothing of it is read or published
        return _Inspected({**entry, "sha256": None, "fragments": {}, "repaired_days": 0, "repairs": [], "drift": []}, [], {})
    staged_path = layers.staging_bars / entry["file"]
    staged = bars_layer(layers.staging_bars)
    repairs = read_repairs(layers, sid)
    staged_bars = staged.read(entry["file"])
    merged = staged_bars if repairs is None or repairs.empty else merged_bars(staged_bars, repairs)
    bars = bars_as_of(merged, cfg.as_of)
    fragments, written = dict(entry["fragments"]), {}
    if bars is not staged_bars:  # repaired or cut at as_of: write the fragments whose bytes changed
        fragments = {}
        for key, data in staged.encode(bars).items():
            fragments[key] = sha256_bytes(data)
            if entry["fragments"].get(key) != fragments[key]:
                written[key] = data
    checked = {
        **entry,
        **bars_summary(bars, cfg.max_gap_days),
        "sha256": table_digest(fragments),
        "fragments": fragments,
        "quarantined": int(entry.get("quarantined", 0)) + int((repair_entry or {}).get("quarantined", 0)),
        "repaired_days": 0 if repairs is None else int(len(repairs)),
        "repairs": [{k: g[k] for k in ("from", "to", "status", "filled_days", "missing_days", "last_tried") if k in g} for g in (repair_entry or {}).get("gaps", [])],
        "drift": sorted(set((repair_entry or {}).get("drift", [])) | _ingest_drift_days(layers, sid)),
    }
    found = validate_ohlcv(bars, file=str(staged_path), as_of=cfg.as_of, limit=20)
    return _Inspected(checked, [str(v) for v in found], written, only_after_as_of=len(merged) > 0 and len(bars) == 0)


def _inspect(shared: tuple[Layers, AuditConfig, dict], item: tuple[str, dict]) -> _Inspected:
    layers, cfg, repairs = shared
    sym, entry = item
    return inspect_symbol(layers, sym, entry, repairs.get(sym), cfg)


@dataclass(frozen=True)
class Published:
    """A certified table as published: why it is not what was certified (or None), and the
    columns the rest of the publication needs (the universe, the features' check)."""

    problem: str | None
    timestamps: np.ndarray | None = None
    traded_value: np.ndarray | None = None


def check_published(shared: tuple[Path, dt.date], item: tuple[str, dict]) -> Published:
    """The last line of defence for one certified table in the build folder.

    Its fragments must hash as certified (nothing changed them while they were linked) and the
    table, read back as published, must meet the OHLCV contract.
    """
    tmp, as_of = shared
    sym, entry = item
    path = tmp / entry["file"]
    on_disk = {p.name[: -len(".parquet")]: sha256_file(p) for p in sorted(path.glob("*.parquet"))}
    if on_disk != entry["fragments"]:
        return Published(f"{sym}: {path.name} changed while it was published (sha256 mismatch)")
    table = bars_layer(tmp).read_table(entry["file"])
    found = validate_ohlcv(table.to_pandas(), file=str(path), as_of=as_of, limit=5)
    if found:
        return Published(f"{sym}: certified file breaks the contract: {found[0]}")
    return Published(None, *traded_value_of(table))


def _ingest_drift_days(layers: Layers, sid: SymbolId) -> set[str]:
    """Days a later fetch served different values for (kept as stored, quarantined as duplicates)."""
    from .staging import quarantine_layer

    q = quarantine_layer(layers.quarantine).read(sid.filename, columns=["timestamp", "rule"])
    if q is None:
        return set()
    return {ms_to_date(int(t)).isoformat() for t in q.loc[q["rule"] == "duplicate_timestamp", "timestamp"]}


def build_documents(inspected: dict[str, _Inspected], cfg: AuditConfig, candidates: list[str] | None, repair_log: dict) -> tuple[dict, dict, dict]:
    """catalog, certified and audit documents (pure)."""
    symbols = {}
    wanted = set(candidates or [])  # a set: `in` on the list was one scan per symbol
    for sym, item in sorted(inspected.items()):
        entry = item.entry
        status, reasons = classify(entry, item.violations, cfg)
        score = 0.0 if status == "toxic" else quality_score(entry.get("rows", 0), entry.get("start_date"), entry.get("end_date"), entry.get("quarantined", 0))
        symbols[sym] = {
            "file": entry["file"] if status != "toxic" else None,
            "sha256": entry["sha256"] if status != "toxic" else None,
            "fragments": entry["fragments"] if status != "toxic" else None,
            "rows": entry.get("rows", 0),
            "start_date": entry.get("start_date"),
            "end_date": entry.get("end_date"),
            "source": entry.get("source"),
            "gaps": entry.get("gaps", []),
            "quarantined": entry.get("quarantined", 0),
            "repaired_days": entry.get("repaired_days", 0),
            "repairs": entry.get("repairs", []),
            "drift": entry.get("drift", []),
            "toxic_from": entry.get("toxic_from"),
            "data_quality_score": score,
            "status": status,
            "reasons": reasons,
            "candidate": None if candidates is None else sym in wanted,
        }
    catalog = {"schema_version": SCHEMA_VERSION, "as_of": cfg.as_of.isoformat(), "symbols": symbols}
    certified = {
        "schema_version": SCHEMA_VERSION,
        "as_of": cfg.as_of.isoformat(),
        "symbols": {
            s: {k: e[k] for k in ("file", "sha256", "fragments", "rows", "start_date", "end_date", "status")}
            for s, e in symbols.items()
            if e["status"] in cfg.certify
        },
    }
    scores = np.array([e["data_quality_score"] for e in symbols.values()] or [0.0])
    gap_status = [g["status"] for e in symbols.values() for g in e["repairs"]]
    report = {
        "as_of": cfg.as_of.isoformat(),
        "symbols": len(symbols),
        "certified": len(certified["symbols"]),
        "by_status": {s: sum(e["status"] == s for e in symbols.values()) for s in STATUSES},
        "quarantined_events": int(sum(e["quarantined"] for e in symbols.values())),
        "gaps": int(sum(len(e["gaps"]) for e in symbols.values())),
        "repairs": {s: gap_status.count(s) for s in ("healed", "partial", "unrepairable", "pending", "outage")},
        "repaired_days": int(sum(e["repaired_days"] for e in symbols.values())),
        "drift_days": int(sum(len(e["drift"]) for e in symbols.values())),
        "outages": repair_log.get("outages", []),
        "stale_symbols": sorted(s for s, e in symbols.items() if e["status"] == "stale"),
        "quality_score": {
            "min": round(float(scores.min()), 6),
            "p25": round(float(np.percentile(scores, 25)), 6),
            "median": round(float(np.median(scores)), 6),
            "mean": round(float(scores.mean()), 6),
        },
        "missing_candidates": sorted(set(candidates or []) - set(symbols)),
    }
    return catalog, certified, report


def run_audit(
    layers: Layers,
    cfg: AuditConfig,
    *,
    candidates: list[str] | None = None,
    publish_features: bool = True,
    universe: UniverseSpec | None = None,
    lock_timeout: float = 3600.0,
) -> AuditResult:
    """Check the staging layers and publish the Golden Copy (see module docstring)."""
    lakehouse = layers.lakehouse
    lakehouse.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lakehouse.parent / ".audit.lock", timeout=lock_timeout, what="another `quantlake audit`"):
        recover_swap(lakehouse)
        remove_stale_temp_dirs(lakehouse)
        return _audit(layers, cfg, candidates, publish_features, universe)


def _audit(layers: Layers, cfg: AuditConfig, candidates: list[str] | None, publish_features: bool, universe: UniverseSpec | None) -> AuditResult:
    lakehouse = layers.lakehouse
    store = StagingStore(layers.staging_bars, layers.quarantine, max_gap_days=cfg.max_gap_days)
    state = store.load_state()
    repair_log = load_repair_log(layers.repairs)
    empty = sorted(sym for sym, entry in state["symbols"].items() if entry.get("file") is None)
    staged = [(sym, entry) for sym, entry in sorted(state["symbols"].items()) if entry.get("file") is not None]
    inspected = dict(zip([sym for sym, _ in staged], iter_batched(_inspect, staged, cfg.processes, (layers, cfg, repair_log.get("symbols") or {}))))
    later = [sym for sym, item in inspected.items() if item.only_after_as_of]  # listed after as_of
    empty = sorted(empty + later)
    inspected = {sym: item for sym, item in inspected.items() if sym not in later}
    catalog, certified, report = build_documents(inspected, cfg, [c for c in candidates or [] if c not in empty] if candidates is not None else None, repair_log)
    report["empty_symbols"] = empty  # checked, but the source has no bar for them in [start, as_of]
    problems = validate_catalog(catalog)
    if problems:
        raise AuditFailure("catalog breaks its contract: " + "; ".join(problems[:10]))

    tmp = Path(tempfile.mkdtemp(prefix=f".{lakehouse.name}.tmp-", dir=lakehouse.parent))
    os.chmod(tmp, dir_mode())  # mkdtemp makes 0700; the published folder follows the umask
    result = AuditResult(catalog, certified, report)
    try:
        for sym, entry in catalog["symbols"].items():
            if entry["status"] == "toxic":
                continue
            table = tmp / entry["file"]
            table.mkdir()
            written = inspected[sym].written
            for key in entry["fragments"]:
                name = f"{key}.parquet"
                if key in written:
                    atomic_write_bytes(table / name, written[key])
                    result.written += 1
                else:
                    how = link_or_copy(layers.staging_bars / entry["file"] / name, table / name)
                    result.linked += how == "link"
                    result.copied += how == "copy"
        # The last line of defence: every certified table, as published, must meet the contract.
        published = {}
        checks = iter_batched(check_published, list(certified["symbols"].items()), cfg.processes, (tmp, cfg.as_of))
        for sym, table in zip(certified["symbols"], checks):
            if table.problem:
                raise AuditFailure(table.problem)
            published[sym] = table
        if publish_features and layers.features.exists():
            from .features import publish_features as _publish

            report["features"] = _publish(layers.features, tmp, certified, {s: p.timestamps for s, p in published.items()})
        report["universe"] = publish_universe(tmp, certified, universe, cfg.as_of, {s: (p.timestamps, p.traded_value) for s, p in published.items()})
        atomic_write_json(tmp / CATALOG, catalog)
        atomic_write_json(tmp / CERTIFIED, certified)
        atomic_write_json(tmp / AUDIT, report)
        for path in tmp.rglob("*"):
            if path.is_file():
                make_read_only(path)
        swap_dir_into_place(tmp, lakehouse)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
