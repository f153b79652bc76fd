"""Reading ahead: ``map`` over a thread pool, in order, a bounded number of items ahead
(audio decoding releases the GIL). Used by extraction, single-process and sharded."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice


def prefetch(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` computed by ``workers`` threads, at most ``2 * workers`` ahead, in order."""
    if workers <= 0:
        yield from map(fn, items)
        return
    it = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        queue = deque(pool.submit(fn, x) for x in islice(it, 2 * workers))
        try:
            while queue:
                result = queue.popleft().result()
                for x in islice(it, 1):
                    queue.append(pool.submit(fn, x))
                yield result
        finally:
            for f in queue:
                f.cancel()


__all__ = ["prefetch"]
