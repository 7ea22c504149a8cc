"""Independent pieces of work in a process pool whose result never depends on its size.

`map_ordered(fn, items, workers, shared)` is `[fn(shared, item) for item in items]`: the same
function on the same inputs, so the same floats in the same order whatever the number of
processes (each item is computed whole by one process; nothing is summed across processes).
`shared` (the large read-only inputs) reaches each worker once, when it starts - inherited
without a copy where the platform forks, pickled once per worker otherwise - and only the
items and the results travel per task.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence

_shared: Any = None  # the worker's copy of `shared`
MAX_BATCH = 64  # items per task in `iter_batched`


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


def iter_ordered(fn: Callable[[Any, Any], Any], items: Sequence[Any], workers: int, shared: Any = None) -> Iterator[Any]:
    """`map_ordered` as it goes: each result as soon as it and every earlier one are done.

    The caller can work on the first results while the pool computes the next ones.
    """
    count = min(resolve_workers(workers), len(items))
    if count <= 1:
        yield from (fn(shared, item) for item in items)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else methods[0])
    with ProcessPoolExecutor(count, mp_context=context, initializer=_receive, initargs=(shared,)) as pool:
        # closing this generator early closes map's, which cancels the items not started yet
        yield from pool.map(_call, [fn] * len(items), items)


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


def _receive(shared: Any) -> None:
    global _shared
    _shared = shared


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_shared, item)
