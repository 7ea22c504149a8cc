"""Benchmark (issue 3): how much of Binance's weight budget the `binance` source uses, politely.

Run: ``python benchmarks/bench_ingest_binance.py [--symbols 300] [--days 2000] [--workers 8]
[--baseline-symbols 100] [--no-ccxt]``

Against the fake exchange of `tests/fake_exchange.py` (real HTTP on 127.0.0.1), which enforces
Binance's weight budget scaled in time - 600 weight per 6 s window instead of 6,000 per
minute, the same rate of 100 weight/s - and answers after a 100 ms round trip, fetch
``--symbols`` symbols x ``--days`` daily bars (seeded fat-tailed random walks, 2 pages of
klines per symbol) with:

    quantlake fetch_many         the binance source, `--workers` threads on one shared pacer
    quantlake, 1 at a time       the same source with one worker (the baseline)
    ccxt fetch_ohlcv loop        ccxt's documented paging loop (since = last + 1, until an
                                 empty page), pointed at the same server via its urls override

Each client gets a fresh server. "% of budget" is the weight the server accepted divided by
(wall time x 100 weight/s). Goal: quantlake fetch_many >= 90% with zero 429 answers, and every
bar equal to what the server holds. The two one-at-a-time clients run on
``--baseline-symbols`` symbols only (a rate does not need the whole universe; ~20 s each).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import numpy as np  # noqa: E402

from common import print_machine, print_table  # noqa: E402
from fake_exchange import FakeExchange  # noqa: E402
from quantlake.contracts import DAY_MS, SymbolId, date_to_ms  # noqa: E402
from quantlake.sources import make_source  # noqa: E402

WEIGHT_LIMIT, WINDOW_S, LATENCY_S = 600, 6.0, 0.100
BUDGET_PER_S = WEIGHT_LIMIT / WINDOW_S
FIRST_DAY = dt.date(2017, 1, 1)


def synthetic_rows(n_symbols: int, n_days: int, seed: int = 7) -> dict[str, list[list]]:
    """Kline rows (as the REST API serves them) of seeded, fat-tailed random walks."""
    rng = np.random.default_rng(seed)
    t0 = date_to_ms(FIRST_DAY)
    out = {}
    for k in range(n_symbols):
        r = 0.03 * rng.standard_t(4, n_days) / np.sqrt(2.0)
        close = 10.0 ** rng.uniform(-2, 4) * np.exp(np.cumsum(r))
        open_ = np.r_[close[0] / np.exp(r[0]), close[:-1]]
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n_days)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n_days)))
        volume = np.exp(rng.normal(12, 1, n_days))
        rows = []
        for i in range(n_days):
            t = t0 + i * DAY_MS
            qv = close[i] * volume[i]
            rows.append(
                [t, "%.8f" % open_[i], "%.8f" % high[i], "%.8f" % low[i], "%.8f" % close[i], "%.8f" % volume[i],
                 t + DAY_MS - 1, "%.8f" % qv, 1000 + i, "%.8f" % (volume[i] / 2), "%.8f" % (qv / 2), "0"]
            )  # fmt: skip
        out[f"S{k:04d}USDT"] = rows
    return out


def new_server(rows: dict[str, list[list]], n_days: int) -> FakeExchange:
    """A fake exchange serving `rows` (start it with `with`), every bar closed."""
    now = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=n_days), dt.time(1), tzinfo=dt.timezone.utc)
    server = FakeExchange(rows, now=now, weight_limit=WEIGHT_LIMIT, window_s=WINDOW_S, latency_s=LATENCY_S)
    # The server's millions of row objects live in this process (a real client does not carry
    # them): keep them out of the cyclic GC's full collections, which would stall the client.
    gc.collect()
    gc.freeze()
    return server


def measure(name: str, rows: dict, n_days: int, run, check) -> tuple[list, dict]:
    """Time `run(server, symbols) -> fetched` on a fresh server, then `check(fetched) -> {symbol:
    n bars equal to the served ones, or -1}` outside the timing; one table row."""
    with new_server(rows, n_days) as server:
        symbols = sorted(rows)
        started = time.perf_counter()
        fetched = run(server, symbols)
        elapsed = time.perf_counter() - started
        counts = server.status_counts
        weight = sum(r.weight for r in server.records if r.status == 200)
        requests = len(server.requests_for("/api/v3/klines"))
    got = check(fetched)
    complete = all(got.get(s) == n_days for s in symbols)
    row = [name, len(symbols), requests, weight, elapsed, weight / elapsed, 100 * weight / elapsed / BUDGET_PER_S, counts[429], counts[418], "yes" if complete else "NO"]
    return row, {"share": weight / elapsed / BUDGET_PER_S, "429": counts[429], "418": counts[418], "complete": complete}


def same_as_served(rows: dict[str, list[list]]):
    """{symbol: [[ms, o, h, l, c, v], ...]} -> {symbol: bar count if every value is the served one, else -1}."""

    def check(fetched: dict[str, list]) -> dict[str, int]:
        out = {}
        for symbol, bars in fetched.items():
            if hasattr(bars, "columns"):  # quantlake's DataFrame
                bars = [[int(r[0]), *r[1:]] for r in bars.itertuples(index=False)]
            served = [[r[0], *(float(x) for x in r[1:6])] for r in rows[symbol]]
            out[symbol] = len(bars) if bars == served else -1
        return out

    return check


def run_quantlake(workers: int, n_days: int):
    def run(server: FakeExchange, symbols: list[str]) -> dict[str, list]:
        src = make_source(server.data_params(max_workers=workers))
        try:
            start, end = FIRST_DAY, FIRST_DAY + dt.timedelta(days=n_days - 1)
            result = src.fetch_many([SymbolId.of("BINANCE", s) for s in symbols], start, end)
        finally:
            src.close()
        return {sid.symbol: v for sid, v in result.items()}

    return run


def run_ccxt(n_days: int):
    import ccxt

    def run(server: FakeExchange, symbols: list[str]) -> dict[str, list]:
        exchange = ccxt.binance({"enableRateLimit": True, "options": {"fetchMarkets": {"types": ["spot"]}}})
        exchange.urls["api"]["public"] = server.url + "/api/v3"
        exchange.load_markets()
        out = {}
        for s in symbols:
            market = exchange.markets_by_id[s][0]["symbol"]
            since, bars = date_to_ms(FIRST_DAY), []
            while True:  # the loop of ccxt's manual (Pagination: date-based)
                page = exchange.fetch_ohlcv(market, "1d", since, 1000)
                if not page:
                    break
                bars += page
                since = page[-1][0] + 1
            out[s] = bars
        return out

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--days", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--baseline-symbols", type=int, default=100)
    ap.add_argument("--no-ccxt", action="store_true")
    args = ap.parse_args()

    print_machine()
    print(f"\nfake exchange: {WEIGHT_LIMIT} weight per {WINDOW_S:.0f} s ({BUDGET_PER_S:.0f} weight/s), {LATENCY_S * 1000:.0f} ms round trip")
    t = time.perf_counter()
    rows = synthetic_rows(args.symbols, args.days)
    print(f"generated {args.symbols} x {args.days} bars in {time.perf_counter() - t:.1f}s", flush=True)
    subset = {k: rows[k] for k in sorted(rows)[: args.baseline_symbols]}

    table, results = [], {}
    check = same_as_served(rows)
    for name, data, run in [
        (f"quantlake fetch_many ({args.workers} workers)", rows, run_quantlake(args.workers, args.days)),
        ("quantlake, 1 at a time", subset, run_quantlake(1, args.days)),
    ]:
        row, res = measure(name, data, args.days, run, check)
        table.append(row)
        results[name] = res
        print(f"  done: {name} in {row[4]:.1f}s", flush=True)
    ccxt_note = None
    if args.no_ccxt:
        ccxt_note = "ccxt: skipped (--no-ccxt)"
    else:
        try:
            import ccxt
        except ImportError:
            ccxt_note = "ccxt: not installed (pip install ccxt to compare)"
        else:
            name = f"ccxt {ccxt.__version__} fetch_ohlcv loop"
            row, results[name] = measure(name, subset, args.days, run_ccxt(args.days), check)
            table.append(row)
    headers = ["client", "symbols", "klines requests", "weight", "seconds", "weight/s", "% of budget", "429s", "418s", "all bars"]
    print_table(headers, table, title=f"{args.days} daily bars per symbol; budget {BUDGET_PER_S:.0f} weight/s")
    if ccxt_note:
        print(ccxt_note)
    main_result = results[table[0][0]]
    ok = main_result["share"] >= 0.90 and main_result["429"] == 0 and main_result["418"] == 0 and main_result["complete"]
    print(f"\ngoal (>= 90% of the budget, zero 429, every bar): {'met' if ok else 'MISSED'} ({100 * main_result['share']:.1f}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
