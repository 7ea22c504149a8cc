"""`files`: a folder of users' own daily bar files, one file per symbol.

Formats (by extension and, for CSV, by header):

* `.csv` with a header `timestamp, open, high, low, close, volume` (`timestamp` an ISO date /
  datetime in UTC, or epoch milliseconds; `date` is accepted for `timestamp`);
* `.csv` in Binance's 12-field kline layout, with or without a header, optionally after a date
  column (`Date` + 12 fields, as the real `binance_spot_1d_klines12_csv` files) - parsed by
  `klines.py` like the REST API and the archives;
* `.json`: freqtrade's `[[epoch ms, open, high, low, close, volume], ...]`;
* `.feather`: freqtrade's feather (`date` as a UTC datetime, or `timestamp`, + OHLCV).

The symbol comes from the file name: `BTCUSDT_1d.csv`, `BTCUSDT-1d.csv`, `BTC_USDT-1d.json`
all mean `{exchange}:BTCUSDT` (`data.files.exchange`, default BINANCE). Files of another
timeframe (`BTCUSDT-1h.csv`) are not daily bars and are ignored. A file that cannot be read
is an error naming the file and the field.

Discovery works on the folder: `list_markets(as_of)` computes each market from its bars as of
that day (`market_from_bars`), so it is point-in-time.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import pandas as pd

from ..contracts import DAY_MS, OHLCV_COLUMNS, SYMBOL_RE, ContractError, SymbolId, date_to_ms, empty_bars, ms_to_date
from ..params_base import Section, check
from .base import Market, SourceError
from .klines import clip_days, epoch_to_ms, klines_to_bars, read_kline_csv, sort_unique, to_floats, to_ints

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
    """The OHLCV bars of one file (any supported format), sorted and unique, unsanitized."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            bars = _read_freqtrade_json(path)
        elif path.suffix == ".feather":
            bars = _read_feather(path)
        elif path.suffix == ".csv":
            bars = _read_csv(path)
        else:
            raise ContractError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(EXTENSIONS)})")
    except OSError as exc:
        raise ContractError(f"{path}: cannot read: {exc}") from exc
    return sort_unique(bars)


def market_from_bars(bf: BarFile, bars: pd.DataFrame, as_of: dt.date) -> Market | None:
    """The market as it stood on `as_of`, from its bars (None: not listed yet).

    traded_value_30d is the median of close * volume over the bars of the 30 days up to
    `as_of` (0 when none traded); traded_value_24h is that of the `as_of` bar (0 without one).
    """
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


class FilesSource:
    name = "files"

    def __init__(self, config: FilesConfig | None = None):
        self.config = config or FilesConfig()
        self.exchange = self.config.exchange
        self.folder = Path(self.config.path)

    def files(self) -> dict[SymbolId, BarFile]:
        """Every daily-bar file of the folder by symbol (two files for one symbol is an error)."""
        if not self.folder.is_dir():
            raise SourceError(f"data.files.path: folder {str(self.folder)!r} does not exist")
        out: dict[SymbolId, BarFile] = {}
        for path in sorted(self.folder.iterdir()):
            if path.suffix not in EXTENSIONS or not path.is_file():
                continue
            try:
                bf = bar_file(path, self.exchange)
            except ContractError as exc:
                raise SourceError(str(exc)) from exc
            if bf is None:
                continue
            if bf.symbol in out:
                raise SourceError(f"{out[bf.symbol].path.name} and {path.name} both hold this symbol; keep one", symbol=bf.symbol)
            out[bf.symbol] = bf
        return out

    def list_markets(self, as_of: dt.date) -> list[Market]:
        markets, problems = [], []
        for sid, bf in sorted(self.files().items()):
            try:
                market = market_from_bars(bf, read_bar_file(bf.path), as_of)
            except ContractError as exc:
                problems.append(str(exc))
                continue
            if market is not None:
                markets.append(market)
        if problems:  # a user's broken file must not silently drop a symbol from discovery
            raise SourceError(f"{len(problems)} unreadable file(s) in {self.folder}: " + "; ".join(problems))
        return markets

    def fetch_bars(self, symbol: SymbolId, start: dt.date, end: dt.date) -> pd.DataFrame:
        sid = symbol if isinstance(symbol, SymbolId) else SymbolId.parse(symbol)
        bf = self.files().get(sid)
        if bf is None:
            raise SourceError(f"no file for this symbol in {self.folder}", symbol=sid)
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
    data = {"timestamp": epoch_to_ms(to_ints(columns[0], field="timestamp", where=where))}
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
    header = data.split(b"\n", 1)[0].decode("utf-8-sig", "replace").strip().lower()
    names = [n.strip().replace(" ", "_") for n in header.split(",")]
    if len(names) in (12, 13) and ("close_time" in names or not _is_header(names)):
        return klines_to_bars(read_kline_csv(data, where=str(path)))
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
    """Epoch ms from datetimes, ISO date/datetime text (UTC unless stated) or epoch ms/us."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values
    else:
        text = values.astype(str).str.strip()
        if text.str.fullmatch(r"\d+").all():
            return epoch_to_ms(to_ints(text.to_numpy(dtype=object), field=field, where=where, first_row=first_row, row_label=row_label))
        stamps = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero(stamps.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise ContractError(f"{where}: {row_label} {first_row + i}: field {field!r}: {text.iat[i]!r} is neither an ISO date nor epoch milliseconds")
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(dtype="int64")


def from_params(data) -> FilesSource:
    """The source of `data.source: files` from the typed `data` section."""
    return FilesSource(data.files)


__all__ = ["FilesSource", "FilesConfig", "BarFile", "bar_file", "read_bar_file", "market_from_bars", "split_pair", "from_params", "QUOTE_ASSETS"]
