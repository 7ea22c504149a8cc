"""`quantlake digest`: what changed in this version of the lakehouse and of today's portfolio.

A digest compares two *digest inputs*: small records of one version (per symbol: catalog status,
exchange status, rows, first and last day, quarantined bars, repaired days; today's portfolio).

- This version's input is read from the workspace: `data/lakehouse/catalog.json`,
  `data/export/candidates.json` (the exchange status: TRADING, HALT, BREAK) and
  `artifacts/alpha/portfolio.json`.
- The previous version's input is the one the last digest saved for an earlier `as_of`
  (`.quantlake/digest/<as_of>.json`, git-ignored, written at the end of every digest), so a
  digest can be printed again and always compares against the previous day's version. Where no
  such file exists (a fresh clone), it is read from git `HEAD` through DVC (`--against REV`
  picks another revision: a tag such as `lakehouse/2026-11-20`, a commit, a branch).

The diff functions are pure (dicts in, dicts out); `run_digest` is the IO around them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable

from .contracts import ContractError
from .storage import atomic_write_json, read_json

DIGEST_DIR = Path(".quantlake/digest")
CATALOG = Path("data/lakehouse/catalog.json")
CANDIDATES = Path("data/export/candidates.json")
PORTFOLIO = Path("artifacts/alpha/portfolio.json")
REPORT = Path("artifacts/reports/data_audit.html")
TEARSHEETS = (Path("artifacts/backtest/tearsheet.png"), Path("artifacts/backtest/tearsheet.html"))
DELISTED, HALTED = "BREAK", "HALT"  # the exchange's status of a pair that no longer trades
# a symbol new to the catalog is a new listing when the exchange listed it at most this many days
# before as_of (the scanners admit a pair min_listing_days = 30 days after its listing); an
# older pair that entered the candidates (e.g. climbed into the top N) is reported apart
NEW_LISTING_DAYS = 60
MIN_TRADE = 1e-6  # weight changes below this are rounding, not trades
SHOW = 12  # at most this many lines per list; the rest is counted


# --------------------------------------------------------------------------- pure


def digest_input(catalog: dict, candidates: dict | None = None, portfolio: dict | None = None) -> dict:
    """The record of one version that a digest compares."""
    rows = (candidates or {}).get("candidates", [])
    exchange = {c["symbol"]: (c.get("metrics") or {}).get("status") for c in rows}
    listed = {c["symbol"]: (c.get("metrics") or {}).get("listed_on") for c in rows}
    symbols = {}
    for sym, e in sorted((catalog.get("symbols") or {}).items()):
        symbols[sym] = {
            "status": e.get("status"),
            "exchange_status": exchange.get(sym),
            "listed_on": listed.get(sym),
            "rows": int(e.get("rows") or 0),
            "start": e.get("start_date"),
            "end": e.get("end_date"),
            "quarantined": int(e.get("quarantined") or 0),
            "repaired_days": int(e.get("repaired_days") or 0),
        }
    for sym in sorted(set(exchange) - set(symbols)):  # a candidate without staged data
        symbols[sym] = {"status": None, "exchange_status": exchange[sym], "listed_on": listed.get(sym), "rows": 0,
                        "start": None, "end": None, "quarantined": 0, "repaired_days": 0}
    doc = {"as_of": catalog.get("as_of"), "symbols": symbols}
    if portfolio:
        doc["portfolio"] = {
            "as_of": portfolio.get("as_of"),
            "method": portfolio.get("method"),
            "weights": {s: float(w) for s, w in sorted((portfolio.get("weights") or {}).items())},
        }
    return doc


def compare(previous: dict | None, current: dict) -> dict:
    """What changed from `previous` to `current` (both `digest_input` records; previous may be None)."""
    prev_symbols = (previous or {}).get("symbols") or {}
    cur_symbols = current.get("symbols") or {}
    out: dict = {"as_of": current.get("as_of"), "previous_as_of": (previous or {}).get("as_of")}
    new = sorted(s for s in cur_symbols if s not in prev_symbols) if previous else []
    # a new listing (listed at most NEW_LISTING_DAYS before as_of), or an older pair that entered the candidates
    recent = (dt.date.fromisoformat(current["as_of"]) - dt.timedelta(days=NEW_LISTING_DAYS)).isoformat() if current.get("as_of") else ""
    fresh = [s for s in new if (cur_symbols[s].get("listed_on") or cur_symbols[s].get("start") or "") >= recent]
    out["new_listings"] = [{"symbol": s, "start": cur_symbols[s]["start"], "listed_on": cur_symbols[s].get("listed_on")} for s in fresh]
    out["joined"] = [{"symbol": s, "start": cur_symbols[s]["start"]} for s in new if s not in fresh]
    out["gone"] = sorted(s for s in prev_symbols if s not in cur_symbols)
    exchange, status, left = [], [], []
    for sym, cur in cur_symbols.items():
        before = prev_symbols.get(sym)
        if before is None:  # a new symbol, or no previous version: say which ones are not trading
            if cur.get("exchange_status") in (DELISTED, HALTED):
                exchange.append({"symbol": sym, "from": None, "to": cur["exchange_status"]})
            continue
        was, now = before.get("exchange_status"), cur.get("exchange_status")
        if was is not None and now is None:
            left.append(sym)  # no longer among the scanners' candidates (e.g. fell out of the top N)
        elif was != now:
            exchange.append({"symbol": sym, "from": was, "to": now})
        if before.get("status") != cur.get("status"):
            status.append({"symbol": sym, "from": before.get("status"), "to": cur.get("status")})
    out["exchange_changes"] = sorted(exchange, key=lambda x: x["symbol"])
    out["left_candidates"] = sorted(left)
    out["status_changes"] = sorted(status, key=lambda x: x["symbol"])
    out["quarantined"] = _increases(prev_symbols, cur_symbols, "quarantined", bool(previous))
    out["repaired"] = _increases(prev_symbols, cur_symbols, "repaired_days", bool(previous))
    out["rows_added"] = sum(max(c["rows"] - (prev_symbols.get(s) or {}).get("rows", 0), 0) for s, c in cur_symbols.items())
    out["portfolio"] = compare_portfolios((previous or {}).get("portfolio"), current.get("portfolio"))
    return out


def compare_portfolios(previous: dict | None, current: dict | None) -> dict | None:
    """Today's weights against the previous ones and the trades that take one to the other."""
    if current is None:
        return None
    before = (previous or {}).get("weights") or {}
    after = current.get("weights") or {}
    trades = []
    for sym in sorted(set(before) | set(after)):
        delta = after.get(sym, 0.0) - before.get(sym, 0.0)
        if abs(delta) >= MIN_TRADE:
            trades.append({"symbol": sym, "from": before.get(sym, 0.0), "to": after.get(sym, 0.0), "trade": delta})
    trades.sort(key=lambda t: (-abs(t["trade"]), t["symbol"]))
    return {
        "as_of": current.get("as_of"),
        "previous_as_of": (previous or {}).get("as_of"),
        "method": current.get("method"),
        "weights": after,
        "trades": trades,
        "turnover": sum(abs(t["trade"]) for t in trades),
        "had_previous": previous is not None,
    }


def render(diff: dict, current: dict, paths: dict[str, bool] | None = None) -> list[str]:
    """The digest as lines of text, figures as people read them."""
    syms = current.get("symbols") or {}
    by_status: dict[str, int] = {}
    for e in syms.values():
        by_status[e["status"] or "no data"] = by_status.get(e["status"] or "no data", 0) + 1
    head = f"digest: lakehouse as of {diff['as_of']}"
    head += f", compared with {diff['previous_as_of']}" if diff["previous_as_of"] else " (no previous version to compare with)"
    lines = [head, "  symbols: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())) + f"; {diff['rows_added']:,} new bars"]
    lines += _section("new listings", [f"{x['symbol']} (listed {x['listed_on']}, data from {x['start']})" for x in diff["new_listings"]])
    if diff["joined"]:
        lines += _section("new in the candidates", [f"{x['symbol']} (data from {x['start']})" for x in diff["joined"]])
    moves = [f"{x['symbol']} {x['from']} -> {x['to']}" if x["from"] else f"{x['symbol']} {x['to']}" for x in diff["exchange_changes"]]
    lines += _section("delistings and halts (exchange status)", moves)
    lines += _section("status changes", [f"{x['symbol']} {x['from'] or 'no data'} -> {x['to'] or 'no data'}" for x in diff["status_changes"]])
    lines += _section("bars quarantined", [f"{x['symbol']} +{x['added']}" for x in diff["quarantined"]])
    lines += _section("repaired days", [f"{x['symbol']} +{x['added']}" for x in diff["repaired"]])
    if diff["left_candidates"]:
        lines += _section("no longer among the candidates (still in the catalog)", diff["left_candidates"])
    if diff["gone"]:
        lines += _section("no longer in the catalog", diff["gone"])
    lines += _portfolio_lines(diff.get("portfolio"), diff["as_of"])
    for name, exists in (paths or {}).items():
        lines.append(f"  {name}" + ("" if exists else " (not built yet: dvc repro)"))
    return lines


def _portfolio_lines(p: dict | None, as_of: str | None) -> list[str]:
    if p is None:
        return ["  portfolio: none yet (dvc repro builds it)"]
    stale = "" if p["as_of"] == as_of else f" - NOT rebuilt for {as_of} yet (dvc repro)"
    top = sorted(p["weights"].items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    lines = [f"  portfolio as of {p['as_of']} ({p['method']}){stale}: " + ", ".join(f"{s} {w:.1%}" for s, w in top[:8])
             + (f" and {len(top) - 8} more" if len(top) > 8 else "")]
    if not p["had_previous"]:
        return lines
    if not p["trades"]:
        return lines + [f"  trades vs {p['previous_as_of']}: none"]
    lines.append(f"  trades vs {p['previous_as_of']}: turnover {p['turnover']:.1%}")
    for t in p["trades"][:SHOW]:
        side = "buy " if t["trade"] > 0 else "sell"
        lines.append(f"    {side} {t['symbol']:<20} {t['trade']:>+7.1%}  ({t['from']:.1%} -> {t['to']:.1%})")
    if len(p["trades"]) > SHOW:
        lines.append(f"    ... and {len(p['trades']) - SHOW} smaller trades")
    return lines


def _increases(prev: dict, cur: dict, key: str, have_previous: bool) -> list[dict]:
    out = []
    for sym, c in cur.items():
        added = c.get(key, 0) - ((prev.get(sym) or {}).get(key, 0) if have_previous else 0)
        if added > 0:
            out.append({"symbol": sym, "added": int(added)})
    return out


def _section(title: str, items: list[str]) -> list[str]:
    if not items:
        return [f"  {title}: none"]
    shown = ", ".join(items[:SHOW]) + (f" and {len(items) - SHOW} more" if len(items) > SHOW else "")
    return [f"  {title} ({len(items)}): {shown}"]


# --------------------------------------------------------------------------- IO


def read_current(root: Path) -> dict:
    """This version's digest input, from the workspace."""
    catalog_path = root / CATALOG
    if not catalog_path.exists():
        raise ContractError(f"{catalog_path}: no lakehouse catalog yet; run `dvc repro` first")
    return digest_input(read_json(catalog_path), _maybe(root / CANDIDATES), _maybe(root / PORTFOLIO))


def saved_before(root: Path, as_of: str) -> dict | None:
    """The input the last digest saved for the latest as_of before `as_of`, if any."""
    folder = root / DIGEST_DIR
    earlier = sorted(p for p in folder.glob("*.json") if p.stem < as_of) if folder.is_dir() else []
    return read_json(earlier[-1]) if earlier else None


def read_revision(root: Path, rev: str, reader: Callable[[str, str], str] | None = None) -> dict | None:
    """The digest input of git revision `rev`, read through DVC (None if that revision has no lakehouse)."""
    read = reader or _dvc_reader(root)
    try:
        catalog = json.loads(read(str(CATALOG), rev))
    except Exception:  # noqa: BLE001 - no lakehouse at that revision, or its data is not in the cache
        return None
    extra = {}
    for name, path in (("candidates", CANDIDATES), ("portfolio", PORTFOLIO)):
        try:
            extra[name] = json.loads(read(str(path), rev))
        except Exception:  # noqa: BLE001
            extra[name] = None
    return digest_input(catalog, extra["candidates"], extra["portfolio"])


def run_digest(root: Path, against: str | None = None, save: bool = True, reader: Callable[[str, str], str] | None = None) -> list[str]:
    """Compare the workspace with the previous version, save this version's input, return the lines.

    `reader(path, rev)` reads a file of a git revision (default: through `dvc.api.read`).
    """
    current = read_current(root)
    if against:
        previous = read_revision(root, against, reader)
        if previous is None:
            raise ContractError(f"--against {against}: no lakehouse catalog readable at that revision")
    else:
        previous = saved_before(root, current["as_of"])
        if previous is None:
            head = read_revision(root, "HEAD", reader)
            previous = head if head and (head.get("as_of") or "") < (current["as_of"] or "") else None
    paths = {f"data report: {REPORT}": (root / REPORT).exists()}
    paths.update({f"tear sheet: {p}": (root / p).exists() for p in TEARSHEETS})
    lines = render(compare(previous, current), current, paths)
    if save:
        atomic_write_json(root / DIGEST_DIR / f"{current['as_of']}.json", current)
    return lines


def _maybe(path: Path):
    return read_json(path) if path.exists() else None


def _dvc_reader(root: Path) -> Callable[[str, str], str]:
    def read(path: str, rev: str) -> str:
        import dvc.api

        return dvc.api.read(path, repo=str(root), rev=rev)

    return read
