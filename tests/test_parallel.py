"""map_ordered / iter_ordered: the same results in the same order whatever the number of processes."""

import os

import pytest

from quantlake.parallel import iter_batched, iter_ordered, map_ordered, resolve_workers


def _scaled(shared, item):
    return (item * shared["factor"], os.getpid())


def _fails(shared, item):
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return item


def test_results_keep_the_order_of_the_items_whatever_the_workers():
    items = list(range(12))
    one = map_ordered(_scaled, items, 1, {"factor": 0.1})
    assert [r for r, _ in one] == [i * 0.1 for i in items] and {p for _, p in one} == {os.getpid()}
    two = map_ordered(_scaled, items, 2, {"factor": 0.1})
    assert [r for r, _ in two] == [r for r, _ in one]
    assert os.getpid() not in {p for _, p in two}  # really computed by other processes
    assert map_ordered(_scaled, [], 2, {"factor": 1}) == []


def test_errors_reach_the_caller_and_bad_counts_are_refused():
    with pytest.raises(ValueError, match="item 3 is bad"):
        map_ordered(_fails, list(range(6)), 2)
    assert resolve_workers(0) == (os.cpu_count() or 1) and resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers must be >= 0"):
        resolve_workers(-1)


def test_iter_ordered_hands_over_each_result_in_order_as_it_goes():
    items = list(range(9))
    for workers in (1, 2):
        stream = iter_ordered(_scaled, items, workers, {"factor": 0.5})
        first = next(stream)  # available before the rest are consumed
        rest = list(stream)
        assert [r for r, _ in [first, *rest]] == [i * 0.5 for i in items]
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(iter_ordered(_fails, list(range(6)), 2))


def _slow(shared, item):
    import time

    time.sleep(0.2)
    (shared / f"{item}.done").touch()
    return item


def test_a_caller_that_stops_early_waits_for_no_more_work(tmp_path):
    stream = iter_ordered(_slow, list(range(40)), 2, tmp_path)
    assert next(stream) == 0
    stream.close()  # e.g. the caller raised while holding the first result
    done = len(list(tmp_path.glob("*.done")))
    assert 1 <= done < 40  # the pending items were cancelled, not computed
    assert len(list(tmp_path.glob("*.done"))) == done  # and nothing runs on after close()


@pytest.mark.parametrize("batch", [None, 1, 4, 64])
def test_iter_batched_is_one_result_per_item_in_order_whatever_the_batch(batch):
    items = list(range(23))
    one = [r for r, _ in iter_batched(_scaled, items, 1, {"factor": 3}, batch)]
    two = list(iter_batched(_scaled, items, 2, {"factor": 3}, batch))
    assert one == [r for r, _ in two] == [3 * i for i in items]
    # one task (all 23 items in a batch of 64) runs in the caller: no process is started for it
    assert (os.getpid() in {p for _, p in two}) == (batch == 64)
    if batch == 4:  # 6 tasks for 23 items: each task's items in one process
        pids = [p for _, p in two]
        assert all(len(set(pids[i: i + 4])) == 1 for i in range(0, 23, 4))
    with pytest.raises(ValueError, match="item 3 is bad"):
        list(iter_batched(_fails, list(range(6)), 2, None, batch))
    assert list(iter_batched(_scaled, [], 2, {"factor": 1}, batch)) == []


def _square(shared, item):
    return item * item


def test_a_lazy_input_is_read_only_a_few_items_ahead_of_the_results():
    read = []

    def produce():
        for i in range(50):
            read.append(i)
            yield i

    stream = iter_ordered(_square, produce(), 2)
    assert next(stream) == 0
    assert 2 * 2 <= len(read) <= 2 * 2 + 1  # AHEAD items per worker, plus the one refilled
    assert list(stream) == [i * i for i in range(1, 50)] and len(read) == 50


_ORPHAN_SCRIPT = """
import os, sys, time
from quantlake.parallel import iter_ordered

def nap(shared, item):
    os.write(1, f"{os.getpid()}\\n".encode())  # one write: two workers' lines never interleave
    time.sleep(60)

for _ in iter_ordered(nap, range(4), 2):
    pass
"""


def test_workers_die_with_the_process_that_started_them(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "orphans.py"
    script.write_text(_ORPHAN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    workers = {int(proc.stdout.readline()), int(proc.stdout.readline())}
    assert proc.pid not in workers and len(workers) == 2
    proc.send_signal(signal.SIGKILL)  # as a user's kill -9 or the OOM killer would
    proc.wait(30)
    deadline = time.monotonic() + 30
    while workers and time.monotonic() < deadline:
        workers = {pid for pid in workers if _alive(pid)}
        time.sleep(0.05)
    assert not workers, f"worker(s) {workers} outlived their parent"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False
