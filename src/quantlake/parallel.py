"""Independent pieces of work in a process pool whose result never depends on its size.

`map_ordered(fn, items, workers, shared)` is `[fn(shared, item) for item in items]`: the same
function on the same inputs, so the same floats in the same order whatever the number of
processes (each item is computed whole by one process; nothing is summed across processes).
`shared` (the large read-only inputs) reaches each worker once, when it starts - inherited
without a copy where the platform forks, pickled once per worker otherwise - and only the
items and the results travel per task. Workers never outlive the process that started them
(Linux): a killed stage leaves no worker behind still writing files or holding its locks.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Sized
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

_shared: Any = None  # the worker's copy of `shared`
MAX_BATCH = 64  # items per task in `iter_batched`
AHEAD = 2  # items handed to the pool per worker before their results are taken


def resolve_workers(workers: int) -> int:
    """A worker count from a param: itself when >= 1, the machine's cores when 0."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = one per core), got {workers}")
    return workers or os.cpu_count() or 1


def map_ordered(fn: Callable[[Any, Any], Any], items: Sequence[Any], workers: int, shared: Any = None) -> list:
    """[fn(shared, item) for item in items], by up to `workers` processes (0 = one per core).

    `fn` must be a module-level function. With one worker (or one item) nothing is spawned.
    """
    return list(iter_ordered(fn, items, workers, shared))


def iter_ordered(fn: Callable[[Any, Any], Any], items: Iterable[Any], workers: int, shared: Any = None) -> Iterator[Any]:
    """`map_ordered` as it goes: each result as soon as it and every earlier one are done.

    The caller can work on the first results while the pool computes the next ones. `items`
    may be a lazy iterator (say, fetches as they arrive): it is read only AHEAD items per
    worker ahead of the results taken, so its producer runs alongside the pool and what is
    in flight stays bounded.
    """
    count = resolve_workers(workers)
    if isinstance(items, Sized):
        count = min(count, len(items))
    if count <= 1:
        yield from (fn(shared, item) for item in items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else methods[0])
    source = iter(items)
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(count, mp_context=context, initializer=_receive, initargs=(shared, os.getpid())) as pool:
        try:
            # fork the workers (the first submit forks them all) before `items` is read: its
            # producer may start threads, and a process must not fork while other threads run
            pool.submit(os.getpid)
            pending.extend(pool.submit(_call, fn, item) for item in itertools.islice(source, count * AHEAD))
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(_call, fn, item) for item in itertools.islice(source, 1))
                yield result
        finally:
            for future in pending:  # closing early (or an error) cancels the items not started
                future.cancel()


def iter_batched(fn: Callable[[Any, Any], Any], items: Sequence[Any], workers: int, shared: Any = None, batch: int | None = None) -> Iterator[Any]:
    """`iter_ordered` with several items per task: one result per item, in order.

    For many small items (one symbol each), a task per item would cost more in round trips
    than the work; `batch` (default: ~4 tasks per worker, at most MAX_BATCH items) sets it.
    """
    size = batch or max(1, min(MAX_BATCH, -(-len(items) // (4 * resolve_workers(workers)))))
    batches = [items[i: i + size] for i in range(0, len(items), size)]
    for results in iter_ordered(_each, batches, workers, (fn, shared)):
        yield from results


def _each(pair: tuple[Callable[[Any, Any], Any], Any], batch: Sequence[Any]) -> list:
    fn, shared = pair
    return [fn(shared, item) for item in batch]


def _receive(shared: Any, parent: int) -> None:
    global _shared
    _shared = shared
    _die_with(parent)


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_shared, item)
