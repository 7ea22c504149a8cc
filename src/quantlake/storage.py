"""Atomic IO, hashing and locking: the only place that writes files.

Every write goes to a temporary file in the destination folder, is fsync'ed and then
`os.replace`d over the target, so a reader never sees a half-written file and a crash
leaves either the old or the new version.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .contracts import OHLCV_SCHEMA, QuantlakeError, coerce_bars


class LockTimeout(QuantlakeError):
    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode `mkdir` gives under the current umask (mkdtemp's 0700 is widened to it)."""
    return 0o777 & ~_umask()


def make_read_only(path: str | os.PathLike) -> None:
    """Drop the write bits of a published file (a hard-linked copy elsewhere shares them)."""
    os.chmod(path, 0o444 & ~_umask())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    atomic_write_files(path.parent, {path.name: data})


def atomic_write_files(folder: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write each file of `folder` atomically (temp file, fsync, `os.replace`), then fsync the
    folder once: after a crash each file is old or new, and on return all of them are durable
    (one folder sync for a table's fragments instead of one per fragment)."""
    if not files:
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; published files follow the umask like open()
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _fsync_dir(folder)


def dumps_json(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, fixed indentation, trailing newline (stable bytes)."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, dumps_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "rb") as fh:
        return json.load(fh)


def table_to_parquet_bytes(table: pa.Table, metadata: dict[str, str] | None = None, *, dictionary: Sequence[str] | None = None) -> bytes:
    """Deterministic Snappy Parquet bytes (no pandas index metadata; only the given key-values).

    `dictionary`: the only columns to dictionary-encode (None: every column, Parquet's default).
    A column of distinct floats gains nothing from it, and trying costs ~10x the plain write.
    """
    table = table.replace_schema_metadata({k: str(v) for k, v in sorted((metadata or {}).items())} or None)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", write_statistics=True, use_dictionary=True if dictionary is None else list(dictionary))
    return sink.getvalue()


def bars_to_parquet_bytes(bars: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(coerce_bars(bars), schema=OHLCV_SCHEMA, preserve_index=False)
    return table_to_parquet_bytes(table)


def atomic_write_bars(path: str | os.PathLike, bars: pd.DataFrame) -> str:
    """Write OHLCV bars atomically; return the sha256 of the bytes written."""
    data = bars_to_parquet_bytes(bars)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def atomic_write_frame(path: str | os.PathLike, frame: pd.DataFrame, metadata: dict[str, str] | None = None) -> str:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    data = table_to_parquet_bytes(table, metadata)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def read_ohlcv(path: str | os.PathLike) -> pd.DataFrame:
    """Every bar of an OHLCV table: one file (old layout) or a directory of fragments."""
    return pq.read_table(path, schema=OHLCV_SCHEMA).to_pandas()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Hard-link `src` to `dst` where the filesystem allows, else copy. Returns 'link' or 'copy'."""
    try:
        os.link(src, dst)
        return "link"
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
    shutil.copy2(src, dst)
    return "copy"


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike, *, timeout: float = 600.0, what: str = "", on_wait=None
) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path`, released on exit or process death.

    Waits up to `timeout` seconds (calling `on_wait(message)` once when it has to wait);
    raises `LockTimeout` naming the lock otherwise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(f"waiting for the lock {path}: {what or 'another quantlake process'} is running")
                    on_wait = None
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{what or 'another quantlake process'} holds the lock {path} "
                        f"(waited {timeout:.0f}s); try again when it has finished"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
