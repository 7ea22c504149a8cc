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


def _receive(shared: Any) -> None:
    global _shared
    _shared = shared


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_shared, item)
