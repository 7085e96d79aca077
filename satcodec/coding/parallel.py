"""Tiles in parallel: an ordered, bounded map over worker threads.

Threads, not processes: the heavy steps release the GIL (PyTorch and onnxruntime
convolutions, the numba entropy kernels), the tiles' latents stay shared without copies, and
reading stays in the calling thread (a GDAL dataset is not safe across threads). Results come
back in input order, with at most ``2 * workers`` tiles in flight, so memory stays bounded by
the worker count, not the scene.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(threads: int | None) -> int:
    """``threads`` (None: every available core), checked."""
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        from satcodec.errors import ConfigError

        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    return threads


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, in order, with at most ``2 * workers`` items
    submitted ahead of the consumer; ``workers <= 1`` runs in the calling thread.

    ``items`` is consumed in the calling thread (so it may read files); an exception in
    ``fn`` is raised at that item's turn, and the items still pending are cancelled."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="satcodec-tile") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` for the block (None: unchanged), then restored:
    tile workers each run one single-threaded convolution instead of oversubscribing."""
    torch = sys.modules.get("torch")
    if n is None or torch is None:  # nothing to limit where PyTorch is not running the tiles
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["available_cores", "ordered_map", "resolve_workers", "torch_threads"]
