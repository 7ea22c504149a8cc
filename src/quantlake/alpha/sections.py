"""The alpha sections of params.yaml, and the names they are checked against.

`selection`, `synthesis`, `optimization` and `backtest` as frozen dataclasses (defaults defined
here, once; ranges checked in `__post_init__`), built by the strict idiom of `params_base` and
registered in the params model (`quantlake.params`). This module holds no research code and
imports neither scipy nor scikit-learn, so the model can be loaded by every stage and a
change to the research code (`selection.py`, `optimize.py`, ...) never looks like a change
to the Data Cycle's code. The research modules re-export their section
(`from quantlake.alpha.selection import SelectionParams` keeps working).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from quantlake.params_base import Section, check

# --------------------------------------------------------------------------- names

OPTIMIZATION_METHODS = ("equal_weight", "inverse_vol", "min_variance", "max_sharpe", "risk_parity", "hrp", "cluster_two_layer")
LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward")
COVARIANCE_ESTIMATORS = ("ledoit_wolf", "sample")

LOGICS = ("long", "short", "trend", "momentum")
SIDES = ("long", "short")
FIXED_SIDE = {"long": "long", "short": "short"}  # logics whose direction is their name
RATING_COLUMNS = {"rating_all": "recommend_all", "rating_ma": "recommend_ma", "rating_other": "recommend_other"}
SCORED_FEATURES = (
    "momentum",
    "volatility",
    "efficiency",
    "entropy",
    "hurst",
    "skew",
    "kurtosis",
    "cvar",
    "liquidity",
    *RATING_COLUMNS,
)

# The sign says which way is better; the size is the feature's share of the score.
DEFAULT_SCORE_WEIGHTS = (
    ("cvar", 0.5),
    ("efficiency", 0.5),
    ("entropy", -0.5),
    ("hurst", 0.5),
    ("kurtosis", -0.25),
    ("liquidity", 0.5),
    ("momentum", 1.0),
    ("rating_all", 0.5),
    ("skew", 0.25),
    ("volatility", -0.5),
)


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SelectionParams(Section):
    """The `selection` section of params.yaml. Windows are calendar days ending at as_of."""

    SECTION: ClassVar[str] = "selection"

    train_days: int = 365
    lookbacks: tuple[int, ...] = (60, 120, 250)
    min_history_days: int = 180  # observed daily returns needed inside the train window
    max_volatility: float = 3.0  # annualised; 3.0 = 300 %
    max_entropy: float = 0.9995  # normalised permutation entropy (1 = pure noise)
    min_efficiency: float = 0.005  # Kaufman efficiency ratio over the train window
    min_traded_value: float = 0.0  # median daily close * volume over the train window
    cluster_threshold: float = 0.4  # Ward linkage height (scipy's scale) at which the tree is cut
    max_clusters: int = 8
    top_n: int = 2  # symbols kept per cluster
    max_candidates: int = 500  # only the best scores are clustered: the clustering costs N^2 in time and memory
    min_overlap_days: int = 30  # common observations needed for a correlation
    entropy_order: int = 3
    hurst_max_lag: int = 20
    cvar_level: float = 0.05
    score_weights: tuple[tuple[str, float], ...] = DEFAULT_SCORE_WEIGHTS

    def __post_init__(self) -> None:
        s = self.SECTION
        for name in ("train_days", "min_history_days", "max_clusters", "top_n", "max_candidates", "min_overlap_days", "hurst_max_lag"):
            check(getattr(self, name) >= 1, f"{s}.{name} must be >= 1, got {getattr(self, name)}")
        check(len(self.lookbacks) >= 1, f"{s}.lookbacks must list at least one window")
        check(all(k >= 2 for k in self.lookbacks), f"{s}.lookbacks must all be >= 2 days, got {list(self.lookbacks)}")
        check(self.min_history_days <= self.train_days,
              f"{s}.min_history_days ({self.min_history_days}) exceeds train_days ({self.train_days})")
        check(self.max_volatility > 0, f"{s}.max_volatility must be > 0, got {self.max_volatility}")
        check(0 < self.max_entropy <= 1, f"{s}.max_entropy must be in (0, 1], got {self.max_entropy}")
        check(0 <= self.min_efficiency < 1, f"{s}.min_efficiency must be in [0, 1), got {self.min_efficiency}")
        check(self.min_traded_value >= 0, f"{s}.min_traded_value must be >= 0, got {self.min_traded_value}")
        check(self.cluster_threshold > 0, f"{s}.cluster_threshold must be > 0, got {self.cluster_threshold}")
        check(self.entropy_order >= 2, f"{s}.entropy_order must be >= 2, got {self.entropy_order}")
        check(0 < self.cvar_level < 1, f"{s}.cvar_level must be in (0, 1), got {self.cvar_level}")
        unknown = sorted(k for k, _ in self.score_weights if k not in SCORED_FEATURES)
        check(not unknown, f"{s}.score_weights: unknown feature(s) {unknown} (known: {list(SCORED_FEATURES)})")


    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["lookbacks"] = list(self.lookbacks)
        out["score_weights"] = dict(self.score_weights)
        return out


@dataclass(frozen=True)
class SynthesisParams(Section):
    """The `synthesis` section of params.yaml."""

    SECTION: ClassVar[str] = "synthesis"

    logics: tuple[str, ...] = ("long",)
    directions: tuple[str, ...] = ("long",)  # sides generated for the trend and momentum logics
    trend_lookback: int = 50  # days in the moving average
    momentum_lookback: int = 30  # days of the trailing return

    def __post_init__(self) -> None:
        s = self.SECTION
        check(len(self.logics) >= 1, f"{s}.logics must list at least one logic")
        bad = [x for x in self.logics if x not in LOGICS]
        check(not bad, f"{s}.logics: unknown logic(s) {bad} (known: {list(LOGICS)})")
        check(len(set(self.logics)) == len(self.logics), f"{s}.logics lists a logic twice: {list(self.logics)}")
        bad = [x for x in self.directions if x not in SIDES]
        check(self.directions and not bad, f"{s}.directions must be a non-empty subset of {list(SIDES)}, got {list(self.directions)}")
        check(len(set(self.directions)) == len(self.directions), f"{s}.directions lists a side twice")
        check(self.trend_lookback >= 2, f"{s}.trend_lookback must be >= 2, got {self.trend_lookback}")
        check(self.momentum_lookback >= 1, f"{s}.momentum_lookback must be >= 1, got {self.momentum_lookback}")


    def to_dict(self) -> dict:
        return {
            "logics": list(self.logics),
            "directions": list(self.directions),
            "trend_lookback": self.trend_lookback,
            "momentum_lookback": self.momentum_lookback,
        }


@dataclass(frozen=True)
class OptimizationParams(Section):
    """The `optimize` section: passed to `optimize_weights` (risk_free is an annual rate)."""

    SECTION: ClassVar[str] = "optimization"

    method: str = "hrp"
    max_weight: float = 0.25  # per-atom cap
    max_cluster_weight: float = 0.5  # per-cluster cap
    covariance: str = "ledoit_wolf"
    risk_free: float = 0.0
    linkage: str = "single"

    def __post_init__(self) -> None:
        s = self.SECTION
        check(self.method in OPTIMIZATION_METHODS, f"{s}.method: unknown method {self.method!r} (known: {list(OPTIMIZATION_METHODS)})")
        check(self.covariance in COVARIANCE_ESTIMATORS,
              f"{s}.covariance: unknown estimator {self.covariance!r} (known: {list(COVARIANCE_ESTIMATORS)})")
        check(self.linkage in LINKAGE_METHODS, f"{s}.linkage: unknown linkage {self.linkage!r} (known: {list(LINKAGE_METHODS)})")
        check(0 < self.max_weight <= 1, f"{s}.max_weight must be in (0, 1], got {self.max_weight}")
        check(0 < self.max_cluster_weight <= 1, f"{s}.max_cluster_weight must be in (0, 1], got {self.max_cluster_weight}")
        check(math.isfinite(self.risk_free) and self.risk_free > -1, f"{s}.risk_free must be a rate > -1, got {self.risk_free}")


@dataclass(frozen=True)
class BacktestParams(Section):
    """The recipe and the walk-forward: `backtest` keys plus nested selection/synthesis/optimize."""

    SECTION: ClassVar[str] = "backtest"
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("workers",)  # not part of the run id: results do not depend on it

    train_days: int = 365  # optimization window, calendar days ending at the rebalance date
    test_days: int = 30
    step_days: int = 30
    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    delisting_haircut: float = 0.0  # share of a position lost when it is closed out without a bar
    workers: int = 0  # processes computing the rebalance portfolios (0 = os.cpu_count()); results do not depend on it
    benchmark: str = "BTC"  # a symbol id, or a base asset resolved against the USD quotes
    selection: SelectionParams = field(default_factory=SelectionParams)
    synthesis: SynthesisParams = field(default_factory=SynthesisParams)
    optimize: OptimizationParams = field(default_factory=OptimizationParams)

    def __post_init__(self) -> None:
        s = self.SECTION
        for name in ("train_days", "test_days", "step_days"):
            check(getattr(self, name) >= 1, f"{s}.{name} must be >= 1, got {getattr(self, name)}")
        check(self.train_days >= 2, f"{s}.train_days must be >= 2, got {self.train_days}")
        check(
            self.step_days <= self.test_days,
            f"{s}.step_days ({self.step_days}) must not exceed {s}.test_days ({self.test_days}): "
            "every day must be held by some portfolio",
        )
        check(self.fee_bps >= 0 and self.slippage_bps >= 0, f"{s}.fee_bps and {s}.slippage_bps must be >= 0")
        check(0 <= self.delisting_haircut <= 1, f"{s}.delisting_haircut must be in [0, 1], got {self.delisting_haircut}")
        check(self.workers >= 0, f"{s}.workers must be >= 0 (0 = one per core), got {self.workers}")

    @property
    def cost_rate(self) -> float:
        """Cost per unit of traded weight."""
        return (self.fee_bps + self.slippage_bps) / 10_000.0

    @property
    def warmup_days(self) -> int:
        return max(self.train_days, self.selection.train_days, max(self.selection.lookbacks))


SWEEPABLE_SECTIONS = ("selection", "synthesis", "optimization", "backtest")
SWEEP_SCHEDULERS = ("serial", "local")  # or tcp://host:port of a running Dask scheduler


@dataclass(frozen=True)
class SweepParams(Section):
    """The `sweep` section: a grid of alpha params, each point a walk-forward (`quantlake sweep`)."""

    SECTION: ClassVar[str] = "sweep"
    # keys that say how the points run, not what they compute: not part of the run id
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("scheduler", "workers", "retries")

    # "section.key" -> list of values; the default is the example grid params.yaml ships
    grid: dict = field(default_factory=lambda: {"optimization.method": ["hrp", "inverse_vol", "min_variance", "equal_weight"],
                                                "selection.top_n": [1, 2]})
    sample: int = 0  # 0: every grid point; N: a seeded random sample of N points
    seed: int = 0
    scheduler: str = "local"  # serial | local | tcp://host:port of a running Dask scheduler
    workers: int = 0  # local cluster processes; 0 = the machine's cores
    retries: int = 2  # a point whose worker died is run again this many times
    pbo_blocks: int = 16

    def __post_init__(self) -> None:
        s = self.SECTION
        check(isinstance(self.grid, dict), f"{s}.grid must be a mapping of 'section.key' to a list of values")
        for key, values in (self.grid if isinstance(self.grid, dict) else {}).items():
            section, _, name = str(key).partition(".")
            check(section in SWEEPABLE_SECTIONS and bool(name),
                  f"{s}.grid.{key}: keys are '<section>.<key>' with section in {', '.join(SWEEPABLE_SECTIONS)}")
            check(isinstance(values, list) and len(values) > 0, f"{s}.grid.{key}: must be a non-empty list of values")
        check(self.sample >= 0, f"{s}.sample must be >= 0, got {self.sample}")
        check(self.workers >= 0, f"{s}.workers must be >= 0, got {self.workers}")
        check(self.retries >= 0, f"{s}.retries must be >= 0, got {self.retries}")
        check(self.pbo_blocks >= 2 and self.pbo_blocks % 2 == 0, f"{s}.pbo_blocks must be even and >= 2, got {self.pbo_blocks}")
        check(self.scheduler in SWEEP_SCHEDULERS or self.scheduler.startswith("tcp://"),
              f"{s}.scheduler must be serial, local or tcp://host:port, got {self.scheduler!r}")
