"""One strict, typed model of params.yaml, parsed once before any stage touches data.

Every section of params.yaml is one frozen dataclass, registered in `SECTIONS`; its fields are
the section's keys and carry the defaults (each defined once, there), its `__post_init__`
checks the ranges. `load_params` reads the file and builds them all with the strict idiom of
`params_base` (unknown keys, wrong types and out-of-range values anywhere in the file are
reported together in one `ParamsError` naming each full key, e.g.
``params.yaml: data.toxic_treshold: unknown key (did you mean toxic_threshold?)``).

    data          DataParams          (nested: data.sim, data.binance, data.archive, data.files)
    repair        RepairParams
    audit         AuditParams
    selection     alpha.sections.SelectionParams
    synthesis     alpha.sections.SynthesisParams
    optimization  alpha.sections.OptimizationParams
    backtest      alpha.sections.BacktestParams  (the recipe: its selection / synthesis /
                                                   optimize fields are the sections above)

A new section is one frozen dataclass deriving from `params_base.Section` with a `SECTION`
name, added to `SECTIONS` (and to `Params`).

`data.as_of` means one thing everywhere: the last closed UTC day the lakehouse covers. Given
the clock (`now`, used for this check only and never stored), `load_params` refuses a day
that has not closed yet, so every stage refuses it the same way.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

import yaml

from .alpha.sections import BacktestParams, OptimizationParams, SelectionParams, SweepParams, SynthesisParams
from .contracts import STATUSES, ContractError, check_as_of
from .data.quality import QualityRules
from .params_base import ParamsError, Section, build, check, coerce_section, from_plain_dict, to_plain
from .sources import available_sources
from .sources.archive import ArchiveConfig
from .sources.binance import BinanceConfig
from .sources.files import FilesConfig
from .sources.sim import SimConfig

PARAMS_FILE = "params.yaml"
AS_OF_REQUIRED = "data.as_of: required (the last closed UTC day the lakehouse must cover)"


@dataclass(frozen=True)
class DataParams(Section):
    """The `data` section: what the Data Cycle holds, where it comes from, its quality rules."""

    SECTION: ClassVar[str] = "data"

    source: str = "sim"  # a name of `sources.available_sources()`
    as_of: dt.date | None = None  # required: the last closed UTC day the lakehouse must cover
    start: dt.date = dt.date(2020, 1, 1)
    freshness_hours: float = 12.0
    workers: int = 4
    processes: int = 0  # processes for the per-symbol work of the data stages (0 = one per core)
    max_gap_days: int = 5
    toxic_threshold: float = QualityRules.toxic_threshold
    wick_low_factor: float = QualityRules.wick_low_factor
    wick_high_factor: float = QualityRules.wick_high_factor
    stall_days: int = QualityRules.stall_days
    max_contamination_days: int = QualityRules.max_contamination_days
    sim: SimConfig = field(default_factory=SimConfig)
    binance: BinanceConfig = field(default_factory=BinanceConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    files: FilesConfig = field(default_factory=FilesConfig)

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.source in available_sources(), f"{s}.source: unknown source {self.source!r} (known: {available_sources()})")
        check(self.as_of is None or self.start <= self.as_of, f"{s}.start {self.start} is after {s}.as_of {self.as_of}")
        check(self.freshness_hours >= 0, f"{s}.freshness_hours must be >= 0, got {self.freshness_hours}")
        check(self.workers >= 1, f"{s}.workers must be >= 1, got {self.workers}")
        check(self.processes >= 0, f"{s}.processes must be >= 0 (0 = one per core), got {self.processes}")
        check(self.max_gap_days >= 0, f"{s}.max_gap_days must be >= 0, got {self.max_gap_days}")
        self.rules  # noqa: B018 - QualityRules checks its own ranges

    def require_as_of(self) -> dt.date:
        """`as_of`, which every stage needs (a partial `data` mapping may leave it out)."""
        if self.as_of is None:
            raise ParamsError(AS_OF_REQUIRED)
        return self.as_of

    @property
    def rules(self) -> QualityRules:
        return QualityRules(**{f.name: getattr(self, f.name) for f in fields(QualityRules)})


@dataclass(frozen=True)
class RepairParams(Section):
    """The `repair` section: how much gap repair a run may do (`data/repair.py`)."""

    SECTION: ClassVar[str] = "repair"

    max_fills: int = 50  # gap windows fetched per run at most
    symbol_budget_s: float = 30.0  # time one symbol may spend fetching per run
    retry_after_days: int = 7  # an unrepairable gap is asked again once as_of moved this far
    outage_min_symbols: int = 2  # days missing on every listed symbol (at least this many) are an outage

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.max_fills >= 1, f"{s}.max_fills must be >= 1, got {self.max_fills}")
        check(self.symbol_budget_s > 0, f"{s}.symbol_budget_s must be > 0, got {self.symbol_budget_s}")
        check(self.retry_after_days >= 0, f"{s}.retry_after_days must be >= 0, got {self.retry_after_days}")
        check(self.outage_min_symbols >= 2, f"{s}.outage_min_symbols must be >= 2, got {self.outage_min_symbols}")


CERTIFIABLE = tuple(s for s in STATUSES if s != "toxic")


@dataclass(frozen=True)
class AuditParams(Section):
    """The `audit` section: the gate's status rules (`data/audit.py`)."""

    SECTION: ClassVar[str] = "audit"

    stale_days: int = 3  # a last bar older than as_of - stale_days makes a symbol stale
    min_quality: float = 0.98  # below this data quality score a symbol is degraded
    certify: tuple[str, ...] = ("ok", "degraded", "stale")

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.stale_days >= 0, f"{s}.stale_days must be >= 0, got {self.stale_days}")
        check(0 <= self.min_quality <= 1, f"{s}.min_quality must be in [0, 1], got {self.min_quality}")
        bad = [x for x in self.certify if x not in CERTIFIABLE]
        check(not bad, f"{s}.certify: {bad} cannot be certified (choose from {', '.join(CERTIFIABLE)})")
        check(len(self.certify) >= 1, f"{s}.certify must list at least one status")
        check(len(set(self.certify)) == len(self.certify), f"{s}.certify lists a status twice: {list(self.certify)}")


# section name in params.yaml -> its dataclass, in the order they are parsed
SECTIONS: dict[str, type] = {
    "data": DataParams,
    "repair": RepairParams,
    "audit": AuditParams,
    "selection": SelectionParams,
    "synthesis": SynthesisParams,
    "optimization": OptimizationParams,
    "backtest": BacktestParams,
    "sweep": SweepParams,
}
# fields of a section that are other sections (field -> section name), not keys of its own
INHERITED: dict[str, dict[str, str]] = {
    "backtest": {"selection": "selection", "synthesis": "synthesis", "optimize": "optimization"},
}


@dataclass(frozen=True)
class Params:
    """All of params.yaml, typed and checked. `backtest` is the whole recipe."""

    data: DataParams
    repair: RepairParams = field(default_factory=RepairParams)
    audit: AuditParams = field(default_factory=AuditParams)
    selection: SelectionParams = field(default_factory=SelectionParams)
    synthesis: SynthesisParams = field(default_factory=SynthesisParams)
    optimization: OptimizationParams = field(default_factory=OptimizationParams)
    backtest: BacktestParams = field(default_factory=BacktestParams)
    sweep: SweepParams = field(default_factory=SweepParams)

    @property
    def as_of(self) -> dt.date:
        return self.data.require_as_of()

    def plain(self, section: str, results_only: bool = False) -> dict:
        """One section's own keys as plain JSON-able data (defaults filled in). With
        `results_only` (for run ids), without the keys that say only how a stage runs
        (`EXECUTION_KEYS`: worker counts, schedulers), which never change its results."""
        value = getattr(self, section)
        execution = getattr(value, "EXECUTION_KEYS", ()) if results_only else ()
        return to_plain(value, exclude=(*INHERITED.get(section, ()), *execution))


def parse_params(raw: Any, *, source: str = PARAMS_FILE, now: dt.datetime | None = None) -> Params:
    """The model of a params.yaml document; one ParamsError lists every problem.

    With `now`, a `data.as_of` that has not closed in UTC at `now` is a problem too."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"expected a mapping of sections, got {type(raw).__name__}", source=source)
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), list(SECTIONS), n=1, cutoff=0.6)
            problems.append(f"{key}: unknown section ({f'did you mean {close[0]}?' if close else 'known: ' + ', '.join(SECTIONS)})")
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        inherited = INHERITED.get(name, {})
        extra = {f: built[s] for f, s in inherited.items() if built.get(s) is not None}
        built[name] = build(cls, raw.get(name), name, problems, exclude=tuple(inherited), extra=extra)
    data = built["data"]
    if data is not None and data.as_of is None:
        problems.append(AS_OF_REQUIRED)
    elif data is not None and now is not None:
        try:
            check_as_of(data.as_of, now)
        except ContractError as exc:
            problems.append(str(exc))
    if problems:
        raise ParamsError(problems, source=source)
    return Params(**built)


def load_params(path: str | Path = PARAMS_FILE, *, now: dt.datetime | None = None) -> Params:
    """Read and check params.yaml (see `parse_params`); a missing or unreadable file is an error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read params: {exc}", source=str(path)) from exc
    return parse_params(raw, source=str(path), now=now)


__all__ = [
    "Params",
    "DataParams",
    "RepairParams",
    "AuditParams",
    "SECTIONS",
    "ParamsError",
    "load_params",
    "parse_params",
    "coerce_section",
    "from_plain_dict",
    "check",
]
