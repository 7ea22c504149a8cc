"""Discovery: the survivorship-free list of pairs to ingest, attributed to the scanners.

A scanner file (`configs/scanners/*.yaml`) holds the keys of `ScannerConfig`; `base: NAME`
inherits every key of `NAME.yaml` in the same folder (recursively) and overrides them. Files
whose name starts with `_` are presets: they are inherited from, never run.

Discovery applies only a scanner's *static* rules (quote, excluded bases, asset type): every
pair of the quote the source lists - trading, halted or delisted - is a candidate, so that
history can be researched without survivorship bias. The *time-varying* rules (listing age,
median traded value, status, sort and limit) are never applied here with today's figures:
`data/universe.py` evaluates them at every date from the bars known at that date, and the gate
publishes the result (`data/lakehouse/universe.parquet`).

Each candidate lists every scanner whose static rules admit it (`scanners`, with its rank in
that scanner's sort order as of `as_of`, for information) and is attributed (`scanner`,
`rank`) to the first scanner, by file name, whose `statuses` hold the market's status today,
else to the first that admits it. The universe uses `scanners` as the attribution.

`traded_value_30d` is the median daily traded value (quote currency) over the 30 days up to
`as_of` as the source reports it (computed from the bars for `sim` / `files`); an exchange
that only publishes 24h figures is ranked on `traded_value_24h` instead (the candidate's
metrics say which).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from ..contracts import ContractError
from ..sources.base import Market

_TYPES = {
    "name": str,
    "description": str,
    "quote": list,
    "exclude_bases": list,
    "statuses": list,
    "asset_type": str,
    "direction": str,
    "min_listing_days": int,
    "min_traded_value_30d": (int, float),
    "sort_by": str,
    "descending": bool,
    "limit": int,
    "halt_after_days": int,
}
SORT_KEYS = ("traded_value_30d", "traded_value_24h", "listing_days", "symbol")
STATUSES = ("TRADING", "HALT", "BREAK")  # a market's status as a source lists it


@dataclass(frozen=True)
class ScannerConfig:
    name: str
    description: str = ""
    quote: list = field(default_factory=lambda: ["USDT"])
    exclude_bases: list = field(default_factory=list)
    statuses: list = field(default_factory=lambda: ["TRADING"])
    asset_type: str = "spot"
    direction: str = "long"
    min_listing_days: int = 0
    min_traded_value_30d: float = 0.0
    sort_by: str = "traded_value_30d"
    descending: bool = True
    limit: int = 100
    halt_after_days: int = 3  # no bar on this many days up to a date: halted/delisted then


def load_scanner(path: Path, _seen: tuple = ()) -> dict:
    """The merged key/values of a scanner file, following `base:` presets."""
    path = Path(path)
    if path in _seen:
        raise ContractError(f"{path}: circular `base:` chain {' -> '.join(map(str, _seen + (path,)))}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{path}: cannot read scanner: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContractError(f"{path}: a scanner file must be a mapping of keys")
    merged: dict = {}
    base = doc.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or "/" in base or base.startswith("."):
            raise ContractError(f"{path}: key 'base' must be the name of a preset in the same folder, got {base!r}")
        merged.update(load_scanner(path.parent / f"{base}.yaml", _seen + (path,)))
    for key, value in doc.items():
        if key not in _TYPES:
            raise ContractError(f"{path}: unknown key {key!r} (allowed: base, {', '.join(sorted(_TYPES))})")
        want = _TYPES[key]
        if isinstance(value, bool) and want is not bool or not isinstance(value, want):
            raise ContractError(f"{path}: key {key!r} has type {type(value).__name__}, expected {_type_name(want)}")
        merged[key] = value
    return merged


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def scanner_from_file(path: Path) -> ScannerConfig:
    values = load_scanner(path)
    values.setdefault("name", Path(path).stem)
    cfg = ScannerConfig(**values)
    if cfg.sort_by not in SORT_KEYS:
        raise ContractError(f"{path}: key 'sort_by' must be one of {SORT_KEYS}, got {cfg.sort_by!r}")
    if cfg.limit < 1:
        raise ContractError(f"{path}: key 'limit' must be >= 1")
    if cfg.halt_after_days < 1 or cfg.min_listing_days < 0 or cfg.min_traded_value_30d < 0:
        raise ContractError(f"{path}: keys 'halt_after_days' must be >= 1, 'min_listing_days' and 'min_traded_value_30d' >= 0")
    unknown = sorted({s.upper() for s in cfg.statuses} - set(STATUSES))
    if unknown:
        raise ContractError(f"{path}: key 'statuses' has unknown value(s) {unknown} (allowed: {list(STATUSES)})")
    return cfg


def scanner_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*.yaml") if not p.name.startswith("_"))
    if not files:
        raise ContractError(f"{folder}: no scanner files (*.yaml not starting with '_')")
    return files


def market_metrics(m: Market, as_of: dt.date) -> dict:
    value = m.traded_value_30d if m.traded_value_30d is not None else m.traded_value_24h
    return {
        "status": m.status,
        "listed_on": None if m.listed_on is None else m.listed_on.isoformat(),
        "last_trade_on": None if m.last_trade_on is None else m.last_trade_on.isoformat(),
        "listing_days": m.listing_days(as_of),
        "traded_value_30d": m.traded_value_30d,
        "traded_value_24h": m.traded_value_24h,
        "liquidity_basis": "median_30d" if m.traded_value_30d is not None else "24h",
        "liquidity": value,
    }


def admits(cfg: ScannerConfig, m: Market) -> bool:
    """The scanner's static rules: quote, excluded bases, asset type (never the status)."""
    return (
        m.quote.upper() in {q.upper() for q in cfg.quote}
        and m.base.upper() not in {b.upper() for b in cfg.exclude_bases}
        and m.asset_type == cfg.asset_type
    )


def run_scanner(cfg: ScannerConfig, markets: list[Market], as_of: dt.date) -> list[tuple[Market, dict]]:
    """Every market the scanner's static rules admit, in its sort order as of `as_of`, with metrics."""
    picked = [(m, market_metrics(m, as_of)) for m in markets if admits(cfg, m)]

    def key(item):
        m, metrics = item
        if cfg.sort_by == "symbol":
            return (str(m.symbol),)
        v = metrics["liquidity"] if cfg.sort_by == "traded_value_30d" else metrics[cfg.sort_by]
        v = float("-inf") if v is None else float(v)
        return (-v if cfg.descending else v, str(m.symbol))

    return sorted(picked, key=key)


def discover(scanners: list[ScannerConfig], markets: list[Market], *, as_of: dt.date, source: str) -> dict:
    """Run every scanner's static rules and merge the results into the candidates document."""
    by_symbol: dict[str, dict] = {}
    for cfg in scanners:
        for rank, (m, metrics) in enumerate(run_scanner(cfg, markets, as_of), start=1):
            sym = str(m.symbol)
            entry = by_symbol.setdefault(sym, {
                "symbol": sym,
                "exchange": m.symbol.exchange,
                "base": m.base,
                "quote": m.quote,
                "asset_type": m.asset_type,
                "direction": cfg.direction,
                "scanner": None,
                "rank": None,
                "scanners": [],
                "metrics": metrics,
            })
            entry["scanners"].append({"scanner": cfg.name, "rank": rank})
            if entry["scanner"] is None and m.status.upper() in {s.upper() for s in cfg.statuses}:
                entry.update(scanner=cfg.name, rank=rank, direction=cfg.direction)
    names = [s.name for s in scanners]
    for entry in by_symbol.values():
        if entry["scanner"] is None:  # no scanner keeps its status today: the first that admits it
            first = entry["scanners"][0]
            entry.update(scanner=first["scanner"], rank=first["rank"], direction=scanners[names.index(first["scanner"])].direction)
    candidates = sorted(by_symbol.values(), key=lambda c: (names.index(c["scanner"]), c["rank"]))
    return {
        "as_of": as_of.isoformat(),
        "source": source,
        "scanners": [{f.name: getattr(s, f.name) for f in fields(s)} for s in scanners],
        "candidates": candidates,
    }
