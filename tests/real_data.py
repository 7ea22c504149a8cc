"""Where the tests find the real Binance recordings: one place decides.

1. `$QUANTLAKE_REAL_DATA`, else `../shared/data/real/` beside the repository (this workplace
   and CI): used as it is, never copied.
2. On CI (`CI` set, and not "0"/"false"), that folder missing fails every real-data test
   loudly: there they must run.
3. Elsewhere (a user's machine), the same pairs (`real_data_pairs.csv`: the shared
   MANIFEST.csv's folders, files and first/last bars) are fetched once from Binance's public
   kline archive through quantlake's own `archive` source (every zip checked against its
   `.CHECKSUM`; a missing checksum is an error) into a cache folder, `$QUANTLAKE_REAL_CACHE`
   or `~/.cache/quantlake/real-data`, in the shared folder's layouts: freqtrade JSON, the
   12-field kline CSV with a `Date` column, and the verbatim REST sample (from the REST host).
   The cache appears whole or not at all (built aside, then renamed).
4. Offline (a host that does not resolve or answer), every real-data test skips with one and
   the same reason, reported at one place (`fold_offline_skip`) so that pytest's summary shows
   them as ONE line. Any other failure of the fetch (a checksum mismatch, a damaged zip) fails
   the tests: it is not offline.

`$QUANTLAKE_ARCHIVE_BASE` / `$QUANTLAKE_REST_BASE` point the fallback at other hosts (a mirror).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "real"
PAIRS = Path(__file__).with_name("real_data_pairs.csv")
FREQTRADE = "binance_spot_1d_freqtrade_json"
KLINES12 = "binance_spot_1d_klines12_csv"
REST_SAMPLE = "binance_rest_payload_sample"
ARCHIVE_BASE = "https://data.binance.vision"
REST_BASE = "https://data-api.binance.vision"
KLINES12_HEADER = (
    "Date,Open Time,Open,High,Low,Close,Volume,Close Time,Quote Asset Volume,Number of Trades,"
    "Taker Buy Base Asset Volume,Taker Buy Quote Asset Volume,Ignore"
)
_INT_FIELDS = (0, 6, 8)  # open time, close time, number of trades
_FETCH_WORKERS = 8


class Offline(Exception):
    """The archive cannot be reached from here."""


def shared_dir() -> Path:
    env = os.environ.get("QUANTLAKE_REAL_DATA")
    return Path(env) if env else SHARED


def cache_dir() -> Path:
    env = os.environ.get("QUANTLAKE_REAL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "quantlake" / "real-data"


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def read_pairs(path: Path = PAIRS) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- the decision


def locate(shared: Path, cache: Path, *, ci: bool, build: Callable[[Path], Path]) -> Path:
    """The folder to read: the shared one, else the cache (built by `build` when absent).

    Raises `RuntimeError` on CI without the shared folder, `Offline` when the cache must be
    built and the archive cannot be reached.
    """
    if (shared / FREQTRADE).is_dir():
        return shared
    if ci:
        raise RuntimeError(f"{shared} is missing on CI: the real-data tests must run there, never skip")
    if (cache / "MANIFEST.csv").is_file():
        return cache
    return build(cache)


_OUTCOME: dict[str, object] = {}


def real_data_root() -> Path:
    """The folder of the real recordings (see the module doc); decided once per session."""
    if not _OUTCOME:
        shared, cache = shared_dir(), cache_dir()
        archive = os.environ.get("QUANTLAKE_ARCHIVE_BASE", ARCHIVE_BASE)
        rest = os.environ.get("QUANTLAKE_REST_BASE", REST_BASE)
        try:
            _OUTCOME["root"] = locate(shared, cache, ci=on_ci(), build=lambda c: build_cache(c, read_pairs(), archive_base=archive, rest_base=rest))
        except Offline as exc:
            _OUTCOME["skip"] = (
                f"real Binance data (offline): {shared} is absent and {exc}; run the tests once online to cache the recordings in {cache}"
            )
        except Exception as exc:  # CI without the folder, a checksum mismatch...: loud, never a skip
            _OUTCOME["fail"] = f"real Binance data: {type(exc).__name__}: {exc}"
    if "fail" in _OUTCOME:
        pytest.fail(str(_OUTCOME["fail"]))
    if "skip" in _OUTCOME:
        pytest.skip(str(_OUTCOME["skip"]))
    return _OUTCOME["root"]  # type: ignore[return-value]


def fold_offline_skip(report) -> None:
    """Report every offline skip at this file's first line: pytest folds skips of one place and
    one reason into one summary line (`SKIPPED [109] tests/real_data.py:1: ...`)."""
    reason = _OUTCOME.get("skip")
    if report.skipped and reason and isinstance(report.longrepr, tuple) and str(report.longrepr[2]).endswith(str(reason)):
        report.longrepr = (str(Path(__file__)), 1, report.longrepr[2])


# --------------------------------------------------------------------------- the fallback


def build_cache(
    cache: Path, pairs: list[dict], *, archive_base: str, rest_base: str, timeout_s: float = 20.0, log: Callable[[str], None] | None = None
) -> Path:
    """Fetch `pairs` into `cache` in the shared folder's layouts (see the module doc)."""
    from quantlake.sources.archive import ArchiveConfig, ArchiveSource
    from quantlake.sources.network import OFFLINE_HINT, HostUnreachable

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cache.parent.mkdir(parents=True, exist_ok=True)
    log(f"real data: fetching {len(pairs)} files from {archive_base} into {cache} (once)")
    src = ArchiveSource(ArchiveConfig(base=archive_base, mode="monthly", timeout_s=timeout_s, retries=2), log=log, require_checksum=True)
    work = Path(tempfile.mkdtemp(prefix=".real-data.", dir=cache.parent))
    try:
        writers = {FREQTRADE: _freqtrade_json, KLINES12: _klines12_csv, REST_SAMPLE: lambda s, p, w: _rest_sample(rest_base, p, w, timeout_s)}
        # the first file alone: offline shows at once, not once per thread
        first, rest = pairs[:1], pairs[1:]
        manifest = [writers[p["dir"]](src, p, work) for p in first]
        with ThreadPoolExecutor(_FETCH_WORKERS) as pool:
            manifest += list(pool.map(lambda p: writers[p["dir"]](src, p, work), rest))
        with open(work / "MANIFEST.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, ["dir", "file", "bars", "first_bar", "last_bar"], lineterminator="\n")
            w.writeheader()
            w.writerows(manifest)
        try:
            work.rename(cache)
        except OSError:
            if not (cache / "MANIFEST.csv").is_file():  # not a concurrent session's complete cache
                raise
        return cache
    except HostUnreachable as exc:
        raise Offline(str(exc).removesuffix(f": {OFFLINE_HINT}")) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
        src.close()


def _window(pair: dict) -> tuple[dt.date, dt.date]:
    return dt.date.fromisoformat(pair["first_bar"]), dt.date.fromisoformat(pair["last_bar"])


def _manifest_row(pair: dict, stamps: list[int]) -> dict:
    day = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    return {"dir": pair["dir"], "file": pair["file"], "bars": len(stamps), "first_bar": day(stamps[0]) if stamps else "", "last_bar": day(stamps[-1]) if stamps else ""}


def _target(work: Path, pair: dict) -> Path:
    folder = work / pair["dir"]
    folder.mkdir(exist_ok=True)
    return folder / pair["file"]


def _freqtrade_json(src, pair: dict, work: Path) -> dict:
    """freqtrade's `[[open time ms, open, high, low, close, volume], ...]` from the archive's bars."""
    from quantlake.contracts import SymbolId

    bars = src.fetch_bars(SymbolId.of("BINANCE", pair["symbol"]), *_window(pair))
    rows = [[int(t), float(o), float(h), float(l), float(c), float(v)] for t, o, h, l, c, v in bars.itertuples(index=False)]
    _target(work, pair).write_text(json.dumps(rows, separators=(",", ":")))
    return _manifest_row(pair, [r[0] for r in rows])


def _kline_rows(src, pair: dict) -> list[list[str]]:
    """The archive's 12-field rows of the pair's window (monthly files), open times in ms."""
    from quantlake.contracts import SymbolId
    from quantlake.sources.archive import csv_from_zip, month_starts, monthly_path
    from quantlake.sources.klines import epoch_to_ms

    sid = SymbolId.of("BINANCE", pair["symbol"])
    first, last = _window(pair)
    lo, hi = _ms(first), _ms(last)
    rows = []
    for month in month_starts(first, last):
        relpath = monthly_path(sid.symbol, month)
        data = src.file_bytes(sid, relpath)
        if data is None:
            continue
        _, text = csv_from_zip(data, where=relpath)
        for line in text.decode().splitlines():
            fields = line.strip().split(",")
            if len(fields) != 12 or not fields[0].isdigit():
                continue  # a header row
            fields[0], fields[6] = (str(int(epoch_to_ms([int(fields[j])])[0])) for j in (0, 6))
            if lo <= int(fields[0]) <= hi:
                rows.append(fields)
    return rows


def _klines12_csv(src, pair: dict, work: Path) -> dict:
    """`Date` + the 12 kline fields, numbers as pandas writes them, `Ignore` as 0 (the shared layout)."""
    rows = _kline_rows(src, pair)
    lines = [KLINES12_HEADER]
    for f in rows:
        values = [str(int(v)) if j in _INT_FIELDS else repr(float(v)) for j, v in enumerate(f[:11])] + ["0"]
        lines.append(",".join([_day(int(f[0])), *values]))
    _target(work, pair).write_text("\n".join(lines) + "\n")
    return _manifest_row(pair, [int(f[0]) for f in rows])


def _rest_sample(rest_base: str, pair: dict, work: Path, timeout_s: float) -> dict:
    """The verbatim body of `GET /api/v3/klines` for the pair's window (the REST host's strings)."""
    from quantlake.sources.network import HostUnreachable, host_of, unreachable_message

    first, last = _window(pair)
    params = {"symbol": pair["symbol"], "interval": "1d", "startTime": _ms(first), "limit": (last - first).days + 1}
    try:
        resp = requests.get(f"{rest_base.rstrip('/')}/api/v3/klines", params=params, timeout=timeout_s)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise HostUnreachable(unreachable_message(host_of(rest_base), f"{type(exc).__name__}")) from exc
    if resp.status_code != 200:
        raise RuntimeError(f"GET {resp.url}: HTTP {resp.status_code}")
    rows = resp.json()
    _target(work, pair).write_bytes(resp.content)
    return _manifest_row(pair, [int(r[0]) for r in rows])


def _ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date().isoformat()
