"""Parameter sweeps: the grid of alpha params, one walk-forward per point, and what the
sweep as a whole says (the best point, its Deflated Sharpe Ratio, the PBO).

The functional core of the `sweep` stage; `sweep_cluster.py` runs the points (serially or on
a Dask cluster) and `stages.run_sweep` does the IO.

A point is params.yaml's alpha sections with some keys overridden (`optimization.method:
min_variance`); its id is the sha256 of its canonical overrides, so the same point has the
same id whatever the grid's order, the sample or the worker that ran it. Points are sorted
by id in every output, which makes the results independent of the order they finish in.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._params import check, from_plain_dict
from .overfitting import deflated_sharpe_of_best, probability_of_backtest_overfitting

SWEEPABLE_SECTIONS = ("selection", "synthesis", "optimization", "backtest")
HEADLINE = ("cagr", "sharpe", "max_drawdown", "volatility", "sortino", "calmar")


@dataclass(frozen=True)
class SweepParams:
    """params.yaml's `sweep:` block."""

    grid: dict = field(default_factory=dict)  # "section.key" -> list of values
    sample: int = 0  # 0: every grid point; N: a seeded random sample of N points
    seed: int = 0
    scheduler: str = "local"  # serial | local | tcp://host:port of a running Dask scheduler
    workers: int = 0  # local cluster processes; 0 = the machine's cores
    retries: int = 2  # a point whose worker died is run again this many times
    pbo_blocks: int = 16

    def __post_init__(self) -> None:
        check(isinstance(self.grid, dict), "sweep.grid must be a mapping of 'section.key' to a list of values")
        for key, values in self.grid.items():
            section, _, name = str(key).partition(".")
            check(section in SWEEPABLE_SECTIONS and bool(name),
                  f"sweep.grid.{key}: keys are '<section>.<key>' with section in {', '.join(SWEEPABLE_SECTIONS)}")
            check(isinstance(values, list) and len(values) > 0, f"sweep.grid.{key}: must be a non-empty list of values")
        check(self.sample >= 0, f"sweep.sample must be >= 0, got {self.sample}")
        check(self.workers >= 0, f"sweep.workers must be >= 0, got {self.workers}")
        check(self.retries >= 0, f"sweep.retries must be >= 0, got {self.retries}")
        check(self.pbo_blocks >= 2 and self.pbo_blocks % 2 == 0, f"sweep.pbo_blocks must be even and >= 2, got {self.pbo_blocks}")
        check(self.scheduler in ("serial", "local") or self.scheduler.startswith("tcp://"),
              f"sweep.scheduler must be serial, local or tcp://host:port, got {self.scheduler!r}")

    @classmethod
    def from_params(cls, d: dict) -> "SweepParams":
        return from_plain_dict(cls, d or {}, "sweep")


@dataclass(frozen=True)
class Point:
    id: str
    overrides: dict  # "section.key" -> value
    params: dict  # the full params with the overrides applied


def point_id(overrides: dict) -> str:
    payload = json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def apply_overrides(params: dict, overrides: dict) -> dict:
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        node = out.setdefault(section, {})
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def expand_grid(params: dict, sweep: SweepParams) -> list[Point]:
    """Every grid point (or a seeded sample of them), sorted by id, each with its full params."""
    keys = sorted(sweep.grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(sweep.grid[k] for k in keys))]
    if sweep.sample and sweep.sample < len(combos):
        rng = np.random.default_rng(sweep.seed)
        combos = [combos[i] for i in sorted(rng.choice(len(combos), size=sweep.sample, replace=False))]
    points = {point_id(c): Point(point_id(c), c, apply_overrides(params, c)) for c in combos}
    return [points[k] for k in sorted(points)]


def default_point(params: dict, points: list[Point]) -> str | None:
    """The id of the point whose params equal params.yaml's own, if the grid holds it."""
    for p in points:
        if all(p.params.get(s) == params.get(s) for s in SWEEPABLE_SECTIONS):
            return p.id
    return None


# --------------------------------------------------------------------------- results


def results_frame(points: list[Point], outcomes: dict[str, dict]) -> pd.DataFrame:
    """One row per point: id, its overrides (one column per grid key, as JSON text so mixed
    types stay exact), its headline metrics, its error (if it raised) and its daily returns
    (a list column starting at `returns_start`)."""
    rows = []
    for p in points:
        o = outcomes[p.id]
        m = (o.get("metrics") or {}).get("strategy") or {}
        row = {"point_id": p.id}
        row |= {f"param.{k}": json.dumps(v) for k, v in sorted(p.overrides.items())}
        row |= {k: m.get(k) for k in HEADLINE}
        row["turnover"] = ((o.get("metrics") or {}).get("trading") or {}).get("mean_turnover")
        row["error"] = o.get("error")
        row["returns_start"] = o.get("returns_start")
        row["returns"] = o.get("returns")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for k in HEADLINE + ("turnover",):
        frame[k] = frame[k].astype("float64")
    return frame


def returns_matrix(results: pd.DataFrame) -> pd.DataFrame:
    """The successful points' daily returns side by side (dates x point ids), on the dates
    every one of them covers."""
    ok = results[results["error"].isna()]
    series = {
        r.point_id: pd.Series(np.asarray(r.returns, dtype="float64"),
                              index=pd.date_range(r.returns_start, periods=len(r.returns), freq="D"))
        for r in ok.itertuples()
    }
    return pd.DataFrame(series).dropna()


def summary(results: pd.DataFrame, default_id: str | None, pbo_blocks: int, periods_per_year: int = 365) -> dict:
    """The sweep's metrics: trials, failures, the best point (by Sharpe), its DSR, the PBO."""
    ok = results[results["error"].isna() & results["sharpe"].notna()]
    out: dict[str, Any] = {"trials": int(len(results)), "failed": int(results["error"].notna().sum())}
    if ok.empty:
        return out | {"best": None}
    best = ok.sort_values(["sharpe", "point_id"], ascending=[False, True]).iloc[0]
    params = {c.removeprefix("param."): json.loads(best[c]) for c in results.columns if c.startswith("param.")}
    out["best"] = {"point_id": best["point_id"], "params": params, **{k: _num(best[k]) for k in HEADLINE + ("turnover",)}}
    if default_id is not None:
        d = results[results["point_id"] == default_id].iloc[0]
        out["default"] = {"point_id": default_id, **{k: _num(d[k]) for k in HEADLINE}}
    matrix = returns_matrix(ok)
    if matrix.shape[1] >= 2 and matrix.shape[0] >= 2 * pbo_blocks:
        best_col, dsr = deflated_sharpe_of_best(matrix.to_numpy())
        out["dsr"] = {**dsr.to_dict(), "point_id": str(matrix.columns[best_col]),
                      "annualised_sharpe": dsr.sharpe * periods_per_year**0.5}
        out["pbo"] = probability_of_backtest_overfitting(matrix.to_numpy(), pbo_blocks).to_dict()
        out["common_days"] = int(matrix.shape[0])
    return out


def _num(x) -> float | None:
    return None if x is None or pd.isna(x) else float(x)
