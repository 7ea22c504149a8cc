"""The real-data fallback (tests/real_data.py): the shared folder first, CI never skips, else the
same pairs fetched from a Binance kline archive (here a tiny mirror served on 127.0.0.1, no real
network) into a cache, and one skip reason when offline."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import real_data
from quantlake.contracts import SymbolId
from quantlake.sources import make_source
from quantlake.sources.archive import monthly_path
from real_data import FREQTRADE, KLINES12, REST_SAMPLE, Offline, build_cache, locate

DAY_MS = 86_400_000
JAN = 1609459200000  # 2021-01-01
PAIRS = [
    {"dir": FREQTRADE, "file": "ETH_USDT-1d.json", "symbol": "ETHUSDT", "first_bar": "2021-01-30", "last_bar": "2021-02-02"},
    {"dir": KLINES12, "file": "BTCUSDT-1d.csv", "symbol": "BTCUSDT", "first_bar": "2024-12-31", "last_bar": "2025-01-01"},
    {"dir": REST_SAMPLE, "file": "BTCUSDT_1d_2017-08-17_to_2017-08-18.rest.json", "symbol": "BTCUSDT", "first_bar": "2017-08-17", "last_bar": "2017-08-18"},
]
REST_BODY = b'[[1502928000000,"4261.48000000","4485.39000000","4200.74000000","4285.08000000","795.15037700",1503014399999,"3454770.05073206",3427,"616.24854100","2678216.40060401","8733.91139481"],[1503014400000,"4285.08000000","4371.52000000","3938.77000000","4108.37000000","1199.88826400",1503100799999,"5086958.30617151",5233,"972.86871000","4129123.31651808","9384.14140858"]]'


def kline(open_ms: int, close: float, *, micro: bool = False) -> str:
    scale = 1000 if micro else 1
    close_time = (open_ms + DAY_MS) * scale - 1
    return f"{open_ms * scale},{close - 1:.8f},{close + 2:.8f},{close - 2:.8f},{close:.8f},10.50000000,{close_time},105.5,42,5.25,52.75,0"


def write_zip(root: Path, relpath: str, lines: list[str], *, checksum: str | None = "ok") -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(path.name.replace(".zip", ".csv"), "\n".join(lines) + "\n")
    if checksum is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if checksum == "ok" else checksum
        (root / (relpath + ".CHECKSUM")).write_text(f"{digest}  {path.name}\n")


@pytest.fixture
def mirror(tmp_path):
    """A tiny archive + REST mirror on 127.0.0.1: (base URL, its folder)."""
    root = tmp_path / "mirror"
    eth = {m: [kline(JAN + d * DAY_MS, 100.0 + d) for d in days] for m, days in ((dt.date(2021, 1, 1), range(25, 31)), (dt.date(2021, 2, 1), range(31, 36)))}
    for month, lines in eth.items():
        write_zip(root, monthly_path("ETHUSDT", month), lines)
    dec31 = 1735603200000  # 2024-12-31
    write_zip(root, monthly_path("BTCUSDT", dt.date(2024, 12, 1)), [kline(dec31 - DAY_MS, 90000.5), kline(dec31, 91000.25)])
    write_zip(root, monthly_path("BTCUSDT", dt.date(2025, 1, 1)), [kline(dec31 + DAY_MS, 92000.0, micro=True), kline(dec31 + 2 * DAY_MS, 93000.0, micro=True)])
    (root / "api/v3").mkdir(parents=True)
    (root / "api/v3/klines").write_bytes(REST_BODY)  # the static server ignores the query string
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def build_from(url: str, **kw):
    return lambda cache: build_cache(cache, PAIRS, archive_base=url, rest_base=url, log=lambda m: None, **kw)


def never_build(cache):
    raise AssertionError("must not fetch")


def test_the_cache_is_built_from_the_archive_in_the_shared_layouts(mirror, tmp_path):
    url, _ = mirror
    cache = tmp_path / "cache" / "real-data"
    assert locate(tmp_path / "absent", cache, ci=False, build=build_from(url)) == cache
    rows = json.loads((cache / FREQTRADE / "ETH_USDT-1d.json").read_text())
    assert rows == [[JAN + d * DAY_MS, 99.0 + d, 102.0 + d, 98.0 + d, 100.0 + d, 10.5] for d in range(29, 33)]  # 01-30..02-02
    csv_lines = (cache / KLINES12 / "BTCUSDT-1d.csv").read_text().splitlines()
    assert csv_lines[0].startswith("Date,Open Time,Open,High,Low,Close,Volume,Close Time")
    assert csv_lines[1:] == [
        "2024-12-31,1735603200000,90999.25,91002.25,90998.25,91000.25,10.5,1735689599999,105.5,42,5.25,52.75,0",
        "2025-01-01,1735689600000,91999.0,92002.0,91998.0,92000.0,10.5,1735775999999,105.5,42,5.25,52.75,0",  # from microseconds
    ]
    assert (cache / REST_SAMPLE / PAIRS[2]["file"]).read_bytes() == REST_BODY
    manifest = (cache / "MANIFEST.csv").read_text().splitlines()
    assert manifest[0] == "dir,file,bars,first_bar,last_bar"
    assert manifest[1] == f"{FREQTRADE},ETH_USDT-1d.json,4,2021-01-30 00:00,2021-02-02 00:00"
    assert not [p for p in cache.parent.iterdir() if p.name != "real-data"]  # no half-built folder left
    # the project's files source reads the cache like the shared folder
    src = make_source({"source": "files", "files": {"path": str(cache / FREQTRADE)}})
    assert src.fetch_bars(SymbolId.parse("BINANCE:ETHUSDT"), dt.date(2021, 1, 1), dt.date(2021, 3, 1))["close"].tolist() == [129.0, 130.0, 131.0, 132.0]
    # a complete cache is used as it is: no network
    assert locate(tmp_path / "absent", cache, ci=False, build=never_build) == cache


@pytest.mark.parametrize("checksum, message", [("0" * 64, "checksum mismatch"), (None, "checksums are required")])
def test_an_unverified_archive_file_fails_and_leaves_no_cache(mirror, tmp_path, checksum, message):
    url, root = mirror
    relpath = monthly_path("ETHUSDT", dt.date(2021, 2, 1))
    (root / (relpath + ".CHECKSUM")).unlink()
    write_zip(root, relpath, [kline(JAN + 31 * DAY_MS, 131.0)], checksum=checksum)
    cache = tmp_path / "cache" / "real-data"
    with pytest.raises(Exception, match=message) as info:
        locate(tmp_path / "absent", cache, ci=False, build=build_from(url))
    assert not isinstance(info.value, Offline)  # a bad file is not "offline": it must not skip
    assert list(cache.parent.iterdir()) == []


def test_unreachable_archives_are_offline(tmp_path):
    with pytest.raises(Offline, match="cannot reach nonexistent.invalid"):
        locate(tmp_path / "absent", tmp_path / "c", ci=False, build=build_from("http://nonexistent.invalid"))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = "http://127.0.0.1:%d" % silent.getsockname()[1]
        with pytest.raises(Offline, match="gave up after 3 attempts"):
            locate(tmp_path / "absent", tmp_path / "c", ci=False, build=build_from(url, timeout_s=0.2))
    assert list(tmp_path.iterdir()) == []


def test_ci_reads_the_shared_folder_and_never_skips(tmp_path):
    shared = tmp_path / "shared"
    (shared / FREQTRADE).mkdir(parents=True)
    assert locate(shared, tmp_path / "c", ci=True, build=never_build) == shared
    assert locate(shared, tmp_path / "c", ci=False, build=never_build) == shared
    with pytest.raises(RuntimeError, match="missing on CI"):
        locate(tmp_path / "absent", tmp_path / "c", ci=True, build=never_build)


@pytest.mark.parametrize("ci, outcome", [("", "skip"), ("true", "fail")])
def test_the_session_decides_once_and_says_it_in_one_line(tmp_path, monkeypatch, ci, outcome):
    monkeypatch.setattr(real_data, "_OUTCOME", {})
    monkeypatch.setenv("QUANTLAKE_REAL_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("QUANTLAKE_REAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("QUANTLAKE_ARCHIVE_BASE", "http://nonexistent.invalid")
    monkeypatch.setenv("CI", ci)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected) as first:
        real_data.real_data_root()
    monkeypatch.setenv("QUANTLAKE_ARCHIVE_BASE", "http://127.0.0.1:9")  # never asked again this session
    with pytest.raises(expected) as second:
        real_data.real_data_root()
    assert str(first.value) == str(second.value)
    if outcome == "skip":
        assert str(first.value).startswith(f"real Binance data (offline): {tmp_path / 'absent'} is absent and cannot reach nonexistent.invalid")
        assert "\n" not in str(first.value) and "data.source" not in str(first.value)
    else:
        assert "missing on CI" in str(first.value)


def test_offline_skips_fold_into_one_summary_line(pytester, monkeypatch):
    """A run of three real-data tests, offline: pytest's summary shows one SKIPPED line."""
    tests = Path(__file__).parent
    pytester.makeconftest(
        f"import sys; sys.path.insert(0, {str(tests)!r})\n"
        "import pytest\nfrom real_data import fold_offline_skip\n"
        "@pytest.hookimpl(wrapper=True)\ndef pytest_runtest_makereport(item, call):\n"
        "    report = yield\n    fold_offline_skip(report)\n    return report\n"
    )
    pytester.makepyfile(
        "from real_data import real_data_root\n"
        "def test_a():\n    real_data_root()\n"
        "def test_b():\n    real_data_root()\n"
        "def test_c():\n    assert real_data_root()\n"
    )
    env = {"QUANTLAKE_REAL_DATA": str(pytester.path / "absent"), "QUANTLAKE_REAL_CACHE": str(pytester.path / "cache"), "QUANTLAKE_ARCHIVE_BASE": "http://nonexistent.invalid", "CI": ""}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=3)
    lines = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(lines) == 1 and lines[0].startswith("SKIPPED [3] ") and "real_data.py:1: " in lines[0], result.outlines


def test_the_fallback_reproduces_the_shared_recordings_from_their_archive_files(real_data_dir, tmp_path):
    """An archive mirror made of the real 12-field rows (as data.binance.vision holds them) gives
    back, through the fallback, the shared freqtrade JSON and kline CSV exactly (BTCUSDT)."""
    from test_source_archive import write_archive_file

    shared_csv = real_data_dir / KLINES12 / "BTCUSDT-1d.csv"
    months: dict[dt.date, list[str]] = {}
    for line in shared_csv.read_text().splitlines()[1:]:
        months.setdefault(dt.date.fromisoformat(line[:10]).replace(day=1), []).append(line.split(",", 1)[1])
    root = tmp_path / "mirror"
    for month, lines in months.items():
        write_archive_file(root, monthly_path("BTCUSDT", month), lines)
    pairs = [p for p in real_data.read_pairs() if p["symbol"] == "BTCUSDT" and p["dir"] in (FREQTRADE, KLINES12)]
    assert len(pairs) == 2
    cache = build_cache(tmp_path / "cache", pairs, archive_base=str(root), rest_base="http://unused.invalid", log=lambda m: None)
    built = json.loads((cache / FREQTRADE / "BTC_USDT-1d.json").read_text())
    assert built == json.loads((real_data_dir / FREQTRADE / "BTC_USDT-1d.json").read_text())
    assert (cache / KLINES12 / "BTCUSDT-1d.csv").read_text() == shared_csv.read_text()
