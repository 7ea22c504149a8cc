"""The Data Cycle's stage commands: thin IO around the data modules, like `alpha/stages.py`.

Each function takes the checked params model (`quantlake.params.Params`, parsed once by the
CLI; `report` reads no params) and the paths of its DVC deps and outs, runs the
core and returns what it did; the CLI only parses arguments, loads the params and prints.

    discover   configs/scanners/          -> data/export/candidates.json
    ingest     candidates                 -> data/staging/bars/, data/staging/quarantine/
    repair     data/staging/bars/         -> data/staging/repairs/
    features   staging bars + repairs     -> data/staging/features/
    audit      every staging layer        -> data/lakehouse/ (the Golden Copy)
    report     lakehouse + staging        -> artifacts/reports/data_audit.html

`now` (the wall clock) is only for the freshness bookkeeping of ingest; `data.as_of` was
checked against it when the params were loaded.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Callable, Iterable

from ..contracts import SymbolId
from ..lakehouse import Layers
from ..params import Params
from ..storage import atomic_write_json, read_json

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_discover(params: Params, scanners_dir: Path, out: Path) -> dict:
    """Run the scanners on the source's markets as of `data.as_of`; write the candidates."""
    from ..sources import make_source
    from .discovery import discover, scanner_files, scanner_from_file

    scanners = [scanner_from_file(p) for p in scanner_files(Path(scanners_dir))]
    source = make_source(params.data)
    doc = discover(scanners, source.list_markets(params.as_of), as_of=params.as_of, source=source.name)
    atomic_write_json(out, doc)
    return doc


def run_ingest(
    params: Params,
    candidates: Path,
    bars: Path,
    quarantine: Path,
    *,
    now: dt.datetime,
    symbols: Iterable[str] | None = None,
    log: Log = _stderr,
):
    """Fetch what is missing for the candidates (or the listed `symbols` among them) and stage it."""
    from ..sources import make_source
    from .ingest import IngestConfig, ingest_symbols, read_candidates
    from .staging import StagingStore

    wanted = read_candidates(candidates)
    if symbols:
        only = {str(SymbolId.parse(s, where="--symbols")) for s in symbols}
        wanted = [s for s in wanted if str(s) in only]
    store = StagingStore(bars, quarantine, max_gap_days=params.data.max_gap_days)
    cfg = IngestConfig.from_params(params.data)
    return ingest_symbols(wanted, make_source(params.data), store, cfg, now=now, log=log, progress=None)


def run_repair(params: Params, root: Path, *, log: Log = _stderr):
    """Re-fetch exactly the staged gap windows into `root/staging/repairs/`."""
    from ..sources import make_source
    from .repair import run_repair as repair_layers

    return repair_layers(Layers(Path(root)), make_source(params.data), params.data, params.repair, log=log)


def run_features(params: Params, root: Path):
    """Point-in-time technical ratings for every staged symbol that is not toxic."""
    from .features import run_features as features_of
    from .staging import StagingStore

    layers = Layers(Path(root))
    state = StagingStore(layers.staging_bars, layers.quarantine).load_state()["symbols"]
    usable = {s: e for s, e in state.items() if not e.get("toxic_reason") and not e.get("corrupt") and e.get("rows")}
    # load_state checked every staged fragment's hash against the bookkeeping: reuse them
    return features_of([SymbolId.parse(s) for s in usable], layers, processes=params.data.processes, progress=None,
                       bar_hashes={s: dict(e["fragments"]) for s, e in usable.items() if e.get("fragments")})


def run_audit(params: Params, root: Path, candidates: Path | None = None):
    """Check every staging layer and publish the Golden Copy as of `data.as_of`."""
    from .audit import AuditConfig, run_audit as audit_layers
    from .universe import UniverseSpec

    names, spec = None, None
    if candidates is not None and Path(candidates).exists():
        doc = read_json(candidates)
        names = [c["symbol"] for c in doc.get("candidates", [])]
        spec = UniverseSpec.from_candidates(doc, file=str(candidates))  # the scanners' rules, for the universe
    return audit_layers(Layers(Path(root)), AuditConfig.from_params(params.data, params.audit), candidates=names, universe=spec)


def run_migrate(root: Path, log: Callable[[str], None] | None = None):
    """Convert every table under `root` to the fragmented layout (`data/migrate.py`; same rows)."""
    from .migrate import migrate_repository

    return migrate_repository(Layers(Path(root)), log=log) if log else migrate_repository(Layers(Path(root)))


def run_report(root: Path, out: Path) -> Path:
    """The human-readable data audit report of the published lakehouse (HTML)."""
    from .report import write_audit_report

    layers = Layers(Path(root))
    return write_audit_report(layers.lakehouse, layers.staging_bars, layers.quarantine, layers.repairs, Path(out))
