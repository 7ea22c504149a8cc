import errno
import multiprocessing as mp
import os
import resource
import signal
import threading
import time

import pytest

from quantlake.storage import LockTimeout, atomic_write_bytes, atomic_write_files, atomic_write_json, file_lock, read_json


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    atomic_write_json(target, {"b": 2})
    assert read_json(target) == {"b": 2}
    assert target.read_text().endswith("\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def _fd_path(fd: int) -> str:
    return os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))


def test_atomic_write_fsyncs_the_temp_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", _fd_path(fd)))
        real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"data")
    monkeypatch.undo()
    renames = [c for c in calls if c[0] == "replace"]
    assert len(renames) == 1 and renames[0][2] == os.path.realpath(target)
    temp, at = renames[0][1], calls.index(renames[0])
    assert temp != renames[0][2] and os.path.dirname(temp) == os.path.realpath(tmp_path)
    # the bytes are on disk before the name points at them ...
    assert ("fsync", temp) in calls[:at], calls
    # ... and the folder entry of the rename is made durable before the write returns
    assert ("fsync", os.path.realpath(tmp_path)) in calls[at + 1 :], calls


def _write_with_file_size_limit(target, data, limit):
    """Child process: the kernel refuses every byte past `limit` (EFBIG), as a full disk would."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        os._exit(3 if exc.errno == errno.EFBIG else 4)
    os._exit(0)


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "a.bin"
    old = b"old." * 1000
    atomic_write_bytes(target, old)
    p = mp.get_context("fork").Process(target=_write_with_file_size_limit, args=(target, b"new." * 250_000, 64 * 1024))
    p.start()
    p.join(30)
    assert p.exitcode == 3  # the write did fail with EFBIG after 64 KiB
    assert target.read_bytes() == old
    assert [q.name for q in tmp_path.iterdir()] == ["a.bin"]


class _SlowFile:
    """A file object that stops half-way through a write until told to go on."""

    def __init__(self, fh, half_written: threading.Event, resume: threading.Event):
        self.fh, self.half_written, self.resume = fh, half_written, resume

    def write(self, data):
        mid = len(data) // 2
        self.fh.write(data[:mid])
        self.fh.flush()
        self.half_written.set()
        assert self.resume.wait(10)
        return mid + self.fh.write(data[mid:])

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)


def test_a_reader_during_a_slow_large_write_sees_the_old_or_the_new_file(tmp_path, monkeypatch):
    target = tmp_path / "big.bin"
    old, new = b"o" * (2 << 20), b"n" * (6 << 20)
    atomic_write_bytes(target, old)
    half_written, resume, stop = threading.Event(), threading.Event(), threading.Event()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _SlowFile(real_fdopen(*a, **k), half_written, resume))
    seen = []

    def reader():
        while not stop.is_set():
            seen.append(target.read_bytes())

    readers = threading.Thread(target=reader)
    writer = threading.Thread(target=atomic_write_bytes, args=(target, new))
    readers.start()
    writer.start()
    assert half_written.wait(10)
    mid_write = target.read_bytes()  # the target while half of the new bytes are written
    resume.set()
    writer.join(30)
    stop.set()
    readers.join(30)
    monkeypatch.undo()
    assert mid_write == old
    assert target.read_bytes() == new
    assert seen and all(s == old or s == new for s in seen), sorted({len(s) for s in seen})


def _hold(path, ready, seconds, done=None):
    with file_lock(path):
        ready.set()
        time.sleep(seconds)
        if done is not None:
            done.write_text("left the critical section")  # the holder's last act under the lock


def test_lock_excludes_another_process_and_says_who_waits(tmp_path):
    lock = tmp_path / ".x.lock"
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    done = tmp_path / "holder-done"
    p = ctx.Process(target=_hold, args=(lock, ready, 1.0, done))
    p.start()
    assert ready.wait(10)
    with pytest.raises(LockTimeout, match="another `quantlake ingest`"):
        with file_lock(lock, timeout=0.2, what="another `quantlake ingest`"):
            pass
    messages = []
    with file_lock(lock, timeout=30, on_wait=messages.append):
        # we got the lock only after the holder had finished everything it did under it
        assert done.exists()
    p.join(10)
    assert p.exitcode == 0
    assert messages and "waiting for the lock" in messages[0]


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    lock = tmp_path / ".x.lock"
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(lock, ready, 60))
    p.start()
    assert ready.wait(10)
    p.kill()
    p.join()
    with file_lock(lock, timeout=5):
        pass


def test_a_table_of_files_is_written_atomically_with_one_folder_sync_after_the_last_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", _fd_path(fd))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda src, dst: calls.append(("replace", os.path.realpath(src), os.path.realpath(dst))) or real_replace(src, dst))
    (tmp_path / "b.bin").write_bytes(b"old")
    atomic_write_files(tmp_path, {"a.bin": b"1", "b.bin": b"22", "c.bin": b"333"})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"a.bin": b"1", "b.bin": b"22", "c.bin": b"333"}  # no temp file left
    renames = [i for i, c in enumerate(calls) if c[0] == "replace"]
    assert len(renames) == 3
    for i in renames:  # each file's bytes are on disk before its name points at them
        assert ("fsync", calls[i][1]) in calls[:i]
    folder_syncs = [i for i, c in enumerate(calls) if c == ("fsync", os.path.realpath(tmp_path))]
    assert len(folder_syncs) == 1 and folder_syncs[0] > renames[-1]  # once, after the last rename
    atomic_write_files(tmp_path / "never", {})
    assert not (tmp_path / "never").exists()  # nothing to write: no folder made
