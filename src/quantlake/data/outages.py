"""Exchange-wide outages: days missing on every symbol that was listed on that day.

When an exchange has no bar for a day on any market (maintenance, an incident), every symbol
shows the same hole. That is one fact about the exchange, not one defect per symbol, and there
is no point asking the source for each symbol's copy of a day it never had. This module finds
such days from the bar timestamps alone (any run length, a single day included); the repair
service leaves them alone and the audit report lists them once.

A symbol counts as *listed* on a day when it has a bar before and a bar after that day, so a
listing or a delisting never looks like an outage. A day is an outage when at least
`min_symbols` symbols were listed on it and all of them miss it: with a single symbol nothing
tells an outage from that symbol's own hole.

Pure functions on integer millisecond timestamps (contract `timestamp` column); no IO.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..contracts import DAY_MS, date_to_ms, ms_to_date, parse_date


def missing_days(timestamps: np.ndarray) -> np.ndarray:
    """Day numbers (days since epoch) strictly between the first and last bar that have no bar."""
    days = np.asarray(timestamps, dtype="int64") // DAY_MS
    if not (np.diff(days) > 0).all():  # a bar table is sorted and unique: no sort needed
        days = np.unique(days)
    if days.size < 2:
        return np.empty(0, dtype="int64")
    missing = np.ones(days[-1] - days[0] + 1, dtype=bool)
    missing[days - days[0]] = False
    return np.flatnonzero(missing).astype("int64") + days[0]


def listed_range(timestamps: np.ndarray) -> tuple[int, int] | None:
    """(first day, last day) numbers of a series, None when it has no bar."""
    ts = np.asarray(timestamps, dtype="int64")
    if ts.size == 0:
        return None
    return int(ts.min() // DAY_MS), int(ts.max() // DAY_MS)


def detect_outages(
    missing_days_by_symbol: Mapping[str, np.ndarray],
    listed_ranges: Mapping[str, tuple[int, int] | None],
    *,
    min_symbols: int = 2,
) -> list[dict]:
    """Runs of days missing on every symbol listed then (see module docstring).

    `missing_days_by_symbol` maps a symbol to its missing day numbers (`missing_days`);
    `listed_ranges` maps every symbol (including those that miss nothing) to its
    (first, last) day numbers (`listed_range`). Returns, sorted by date, one dict per run of
    consecutive outage days: ``{"from", "to"`` (ISO dates)``, "days", "symbols"`` (how many
    symbols were listed and all missed it; the fewest over the run)``}``.
    """
    ranges = {s: r for s, r in listed_ranges.items() if r is not None}
    if len(ranges) < min_symbols:
        return []
    lo = min(r[0] for r in ranges.values())
    hi = max(r[1] for r in ranges.values())
    n = hi - lo + 1
    # listed[d] = symbols with first < d < last, via a difference array over the day axis
    diff = np.zeros(n + 1, dtype="int64")
    for first, last in ranges.values():
        if last - first >= 2:
            diff[first + 1 - lo] += 1
            diff[last - lo] -= 1
    listed = np.cumsum(diff[:n])
    missing = np.zeros(n, dtype="int64")
    for sym, days in missing_days_by_symbol.items():
        r = ranges.get(sym)
        if r is None:
            continue
        d = np.unique(np.asarray(days, dtype="int64"))
        d = d[(d > r[0]) & (d < r[1])]  # only days on which the symbol was listed count
        missing[d - lo] += 1
    outage = (listed >= min_symbols) & (missing == listed)
    return _runs(np.flatnonzero(outage), lo, listed)


def detect_outages_from_timestamps(timestamps_by_symbol: Mapping[str, np.ndarray], *, min_symbols: int = 2) -> list[dict]:
    """`detect_outages` on each symbol's bar timestamps (ms)."""
    return detect_outages(
        {s: missing_days(ts) for s, ts in timestamps_by_symbol.items()},
        {s: listed_range(ts) for s, ts in timestamps_by_symbol.items()},
        min_symbols=min_symbols,
    )


def detect_exchange_outages(timestamps_by_symbol: Mapping[str, np.ndarray], *, min_symbols: int = 2) -> list[dict]:
    """Outages of each exchange (symbols `EXCHANGE:SYMBOL` grouped by their exchange): an
    outage of one venue says nothing about another. Each run carries its ``exchange``."""
    by_exchange: dict[str, dict[str, np.ndarray]] = {}
    for sym, ts in timestamps_by_symbol.items():
        by_exchange.setdefault(sym.split(":", 1)[0], {})[sym] = ts
    out = []
    for ex in sorted(by_exchange):
        out.extend({"exchange": ex, **o} for o in detect_outages_from_timestamps(by_exchange[ex], min_symbols=min_symbols))
    return out


def outage_day_set(outages: list[dict]) -> set[int]:
    """Every day number covered by `outages` (as returned by `detect_outages`)."""
    out: set[int] = set()
    for o in outages:
        first = _iso_to_day(o["from"])
        out.update(range(first, _iso_to_day(o["to"]) + 1))
    return out


def _iso_to_day(iso: str) -> int:
    return date_to_ms(parse_date(iso)) // DAY_MS


def _runs(idx: np.ndarray, lo: int, listed: np.ndarray) -> list[dict]:
    out = []
    if idx.size == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]]
    for a, b in zip(starts, ends):
        out.append(
            {
                "from": ms_to_date((int(a) + lo) * DAY_MS).isoformat(),
                "to": ms_to_date((int(b) + lo) * DAY_MS).isoformat(),
                "days": int(b - a + 1),
                "symbols": int(listed[a : b + 1].min()),
            }
        )
    return out
