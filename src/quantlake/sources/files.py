"""`files`: a folder of users' own daily bar files, one file per symbol.

Formats (by extension and, for CSV, by header):

* `.csv` with a header `timestamp, open, high, low, close, volume` (`timestamp` an ISO date /
  datetime in UTC, or an epoch number; `date` is accepted for `timestamp`);
* `.csv` in Binance's 12-field kline layout, with or without a header, optionally after a date
  column (`Date` + 12 fields, as the real `binance_spot_1d_klines12_csv` files) - parsed by
  `klines.py` like the REST API and the archives;
* `.json`: freqtrade's `[[epoch ms, open, high, low, close, volume], ...]`;
* `.feather`: freqtrade's feather (`date` as a UTC datetime, or `timestamp`, + OHLCV).

Epoch numbers may be seconds, milliseconds, microseconds or nanoseconds, each value's unit told
by its magnitude (`klines.epoch_to_ms`), so a file mixing units is read whole; a value too small
to tell its unit is an error naming the file, the line and the field.

The symbol comes from the file name: `BTCUSDT_1d.csv`, `BTCUSDT-1d.csv`, `BTC_USDT-1d.json`
all mean `{exchange}:BTCUSDT` (`data.files.exchange`, default BINANCE). Files of another
timeframe (`BTCUSDT-1h.csv`) are not daily bars and are ignored.

Rows are served as the file holds them, sorted by day: identical rows merge, but two different
rows for one day both go to ingestion, whose quality gates keep the first and quarantine the
other (rule `duplicate_timestamp`), so nothing a user wrote disappears unrecorded.

A bad file is that file's problem only: a file that cannot be read (empty, damaged, unreadable,
a bad value), a name that says no symbol, or two files for one symbol are logged naming the
file and recorded in `FilesSource.problems` (by symbol, or by file name when the name says
none); discovery goes on with the other files, and `fetch_bars` of such a symbol raises a
`SourceError` naming it and the file(s), so an ingest batch records it and goes on.

Discovery works on the folder: `list_markets(as_of)` computes each market from its bars as of
that day (`market_from_bars`), so it is point-in-time.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, OHLCV_COLUMNS, SYMBOL_RE, ContractError, SymbolId, date_to_ms, empty_bars, ms_to_date
from ..params_base import Section, check
from .base import Market, SourceError
from .klines import clip_days, epoch_to_ms, klines_to_bars, read_kline_csv, sort_bars, to_floats, to_ints

EXTENSIONS = (".csv", ".json", ".feather")
# Quote assets told apart from the end of a pair name, longest first (FDUSD before USD...).
QUOTE_ASSETS = tuple(
    sorted(
        (
            "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD",
            "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE",
            "EUR", "TRY", "GBP", "BRL", "JPY", "AUD", "RUB", "UAH", "ZAR", "PLN", "RON", "ARS",
            "MXN", "COP", "IDR", "NGN",
        ),  # fmt: skip
        key=len,
        reverse=True,
    )
)
TRADED_VALUE_DAYS = 30
_TIMEFRAME = re.compile(r"^(?P<pair>.+?)[-_](?P<tf>\d+[smhdwM])$")
_PAIR = re.compile(r"^(?P<base>[A-Za-z0-9]+)(?:[_-](?P<quote>[A-Za-z0-9]+))?$")
_TIME_NAMES = ("timestamp", "date", "datetime", "time", "open_time")


@dataclass(frozen=True)
class FilesConfig(Section):
    """The `data.files` params section."""

    SECTION: ClassVar[str] = "data.files"

    path: str = "data/raw/files"
    exchange: str = "BINANCE"

    def __post_init__(self) -> None:
        s = self.SECTION
        check(bool(self.path), f"{s}.path: expected a non-empty string")
        check(bool(SYMBOL_RE.match(f"{self.exchange}:CHECK")), f"{s}.exchange: {self.exchange!r} is not an exchange id (A-Z, 0-9)")


@dataclass(frozen=True)
class BarFile:
    """One daily-bar file of the folder and what its name says."""

    path: Path
    symbol: SymbolId
    base: str
    quote: str


def split_pair(pair: str) -> tuple[str, str]:
    """(base, quote) of a pair name without separator, by the known quote suffixes; quote ''
    when none matches."""
    for quote in QUOTE_ASSETS:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return pair, ""


def bar_file(path: Path, exchange: str) -> BarFile | None:
    """What the file name says, or None for a file that does not hold daily bars."""
    stem = path.name[: -len(path.suffix)]
    m = _TIMEFRAME.match(stem)
    pair, timeframe = (m["pair"], m["tf"]) if m else (stem, None)
    if timeframe is not None and timeframe.lower() != "1d":
        return None
    p = _PAIR.match(pair)
    if not p:
        raise ContractError(f"{path}: cannot tell the symbol from the file name (expected e.g. BTCUSDT_1d{path.suffix} or BTC_USDT-1d{path.suffix})")
    base, quote = p["base"].upper(), (p["quote"] or "").upper()
    if not quote:
        base, quote = split_pair(base)
    sid = SymbolId.of(exchange, base + quote, where=f"file name {path.name!r}")
    return BarFile(path, sid, base, quote)


def read_bar_file(path: str | Path) -> pd.DataFrame:
    """The OHLCV bars of one file (any supported format), unsanitized, sorted by day (stable),
    identical rows merged and conflicting rows of one day kept for the quality gates.

    Whatever goes wrong is a `ContractError` naming the file."""
    path = Path(path)
    readers = {".json": _read_freqtrade_json, ".feather": _read_feather, ".csv": _read_csv}
    if path.suffix not in readers:
        raise ContractError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(EXTENSIONS)})")
    try:
        if path.stat().st_size == 0:
            raise ContractError(f"{path}: empty file (0 bytes)")
        bars = readers[path.suffix](path)
    except ContractError:
        raise
    except OSError as exc:
        raise ContractError(f"{path}: cannot read: {exc}") from exc
    except Exception as exc:  # a damaged file can raise anything from the parsers: it is this file's problem
        raise ContractError(f"{path}: not readable: {type(exc).__name__}: {exc}") from exc
    return sort_bars(bars)


def market_from_bars(bf: BarFile, bars: pd.DataFrame, as_of: dt.date) -> Market | None:
    """The market as it stood on `as_of`, from its bars (None: not listed yet).

    traded_value_30d is the median of close * volume over the bars of the 30 days up to
    `as_of` (0 when none traded); traded_value_24h is that of the `as_of` bar (0 without one).
    """
    bars = bars.drop_duplicates("timestamp", keep="first")  # the row ingestion keeps
    ts = bars["timestamp"].to_numpy()
    upto = bars[ts < date_to_ms(as_of) + DAY_MS]
    if upto.empty:
        return None
    value = (upto["close"] * upto["volume"]).to_numpy()
    t = upto["timestamp"].to_numpy()
    recent = value[t >= date_to_ms(as_of) - (TRADED_VALUE_DAYS - 1) * DAY_MS]
    today = value[t >= date_to_ms(as_of)]
    return Market(
        symbol=bf.symbol,
        base=bf.base,
        quote=bf.quote,
        status="TRADING",
        asset_type="spot",
        listed_on=ms_to_date(int(t[0])),
        last_trade_on=ms_to_date(int(t[-1])),
        traded_value_24h=float(today[-1]) if len(today) else 0.0,
        traded_value_30d=float(np.median(recent)) if len(recent) else 0.0,
        extra={"file": bf.path.name},
    )


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class FilesSource:
    name = "files"

    def __init__(self, config: FilesConfig | None = None, *, log: Callable[[str], None] = _stderr):
        self.config = config or FilesConfig()
        self.exchange = self.config.exchange
        self.folder = Path(self.config.path)
        self.log = log
        # The last look at the folder's bad files: symbol (or file name when the name says no
        # symbol) -> what is wrong, naming the file(s).
        self.problems: dict[str, str] = {}

    def files(self) -> dict[SymbolId, BarFile]:
        """Every usable daily-bar file of the folder by symbol.

        A name that says no symbol, or two files for one symbol, is recorded in `problems`
        (the symbol is then left out); the other files go on.
        """
        if not self.folder.is_dir():
            raise SourceError(f"data.files.path: folder {str(self.folder)!r} does not exist")
        out: dict[SymbolId, BarFile] = {}
        problems: dict[str, str] = {}
        clashes: dict[SymbolId, list[str]] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix not in EXTENSIONS or path.is_dir():
                continue
            try:
                bf = bar_file(path, self.exchange)
            except ContractError as exc:
                problems[path.name] = str(exc)
                continue
            if bf is None:
                continue
            if bf.symbol in out or bf.symbol in clashes:
                clashes.setdefault(bf.symbol, [out.pop(bf.symbol).path.name] if bf.symbol in out else []).append(path.name)
                continue
            out[bf.symbol] = bf
        for sid, names in clashes.items():
            problems[str(sid)] = f"{' and '.join(names)} {'both' if len(names) == 2 else 'all'} hold this symbol in {self.folder}; keep one"
        self.problems = problems
        return out

    def list_markets(self, as_of: dt.date) -> list[Market]:
        """The markets of every readable file; each bad file is logged, recorded in `problems`
        and left out, and the others go on."""
        markets = []
        found = self.files()
        for sid, bf in sorted(found.items()):
            try:
                market = market_from_bars(bf, read_bar_file(bf.path), as_of)
            except ContractError as exc:
                self.problems[str(sid)] = str(exc)
                continue
            if market is not None:
                markets.append(market)
        for key, problem in sorted(self.problems.items()):
            self.log(f"files: skipped {key}: {problem}")
        if self.problems:
            self.log(f"files: {len(self.problems)} bad file(s) left out in {self.folder} (above); {len(markets)} market(s) read from the others")
        return markets

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame:
        sid = symbol if isinstance(symbol, SymbolId) else SymbolId.parse(symbol)
        bf = self.files().get(sid)
        if bf is None:
            problem = self.problems.get(str(sid))
            raise SourceError(problem or f"no file for this symbol in {self.folder}", symbol=sid)
        if end < start:
            return empty_bars()
        try:
            bars = read_bar_file(bf.path)
        except ContractError as exc:
            raise SourceError(str(exc), symbol=sid) from exc
        return clip_days(bars, start, end)


# --------------------------------------------------------------------------- formats


def _read_freqtrade_json(path: Path) -> pd.DataFrame:
    try:
        rows = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise ContractError(f"{path}: expected a JSON array of [timestamp, open, high, low, close, volume] rows")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(OHLCV_COLUMNS):
            got = f"{len(row)} fields" if isinstance(row, list) else type(row).__name__
            raise ContractError(f"{path}: row {i}: expected [timestamp, open, high, low, close, volume], got {got}")
    columns = list(zip(*rows)) if rows else [()] * len(OHLCV_COLUMNS)
    where = str(path)
    data = {"timestamp": epoch_to_ms(to_ints(columns[0], field="timestamp", where=where), where=where)}
    for name, values in zip(OHLCV_COLUMNS[1:], columns[1:]):
        data[name] = to_floats(values, field=name, where=where)
    return pd.DataFrame(data)


def _read_feather(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_feather(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise ContractError(f"{path}: not a readable feather file: {exc}") from exc
    return _named_columns(frame, str(path), first_row=0, row_label="row")


def _read_csv(path: Path) -> pd.DataFrame:
    data = path.read_bytes()
    if not data.strip():
        raise ContractError(f"{path}: empty file (no header, no rows)")
    header = data.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip().lower()
    names = [n.strip().replace(" ", "_") for n in header.split(",")]
    if len(names) in (12, 13) and ("close_time" in names or not _is_header(names)):
        return klines_to_bars(read_kline_csv(data, where=str(path)), unique=False)
    if not _is_header(names):
        raise ContractError(f"{path}: a CSV needs a header (timestamp, open, high, low, close, volume) unless it is in the 12-field kline layout")
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not a readable CSV: {exc}") from exc
    frame.columns = names
    return _named_columns(frame, str(path), first_row=2, row_label="line")


def _is_header(names: list[str]) -> bool:
    return not any(n.replace(".", "", 1).isdigit() for n in names)


def _named_columns(frame: pd.DataFrame, where: str, *, first_row: int, row_label: str) -> pd.DataFrame:
    """OHLCV bars from a frame with named columns (time column + open..volume)."""
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    time_col = next((n for n in _TIME_NAMES if n in frame.columns), None)
    missing = [c for c in OHLCV_COLUMNS[1:] if c not in frame.columns]
    if time_col is None or missing:
        need = (["timestamp"] if time_col is None else []) + missing
        raise ContractError(f"{where}: missing column(s) {need} (have {list(frame.columns)})")
    data = {"timestamp": _epoch_ms(frame[time_col], time_col, where, first_row, row_label)}
    for name in OHLCV_COLUMNS[1:]:
        data[name] = to_floats(frame[name].to_numpy(dtype=object), field=name, where=where, first_row=first_row, row_label=row_label)
    return pd.DataFrame(data)


def _epoch_ms(values: pd.Series, field: str, where: str, first_row: int, row_label: str) -> np.ndarray:
    """Epoch ms from datetimes, ISO date/datetime text (UTC unless stated) or epoch numbers."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values
    else:
        text = values.astype(str).str.strip()
        if text.str.fullmatch(r"\d+(\.0*)?").all():  # "1609459200.0" from a spreadsheet round trip too
            at = {"field": field, "where": where, "first_row": first_row, "row_label": row_label}
            return epoch_to_ms(to_ints(text.to_numpy(dtype=object), **at), **at)
        stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero(stamps.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise ContractError(f"{where}: {row_label} {first_row + i}: field {field!r}: {text.iat[i]!r} is neither an ISO date nor an epoch number")
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def from_params(data) -> FilesSource:
    """The source of `data.source: files` from the typed `data` section."""
    return FilesSource(data.files)


__all__ = ["FilesSource", "FilesConfig", "BarFile", "bar_file", "read_bar_file", "market_from_bars", "split_pair", "from_params", "QUOTE_ASSETS"]
