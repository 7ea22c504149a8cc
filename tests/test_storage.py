import multiprocessing as mp
import os
import time

import pytest

from quantlake.storage import LockTimeout, atomic_write_bytes, atomic_write_json, file_lock, read_json


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


def _hold(path, ready, seconds):
    with file_lock(path):
        ready.set()
        time.sleep(seconds)


def test_lock_excludes_another_process_and_says_who_waits(tmp_path):
    lock = tmp_path / ".x.lock"
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold, args=(lock, ready, 1.0))
    p.start()
    assert ready.wait(10)
    with pytest.raises(LockTimeout, match="another `quantlake ingest`"):
        with file_lock(lock, timeout=0.2, what="another `quantlake ingest`"):
            pass
    messages = []
    with file_lock(lock, timeout=30, on_wait=messages.append):
        assert not p.is_alive() or p.join(5) is None
    p.join()
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
