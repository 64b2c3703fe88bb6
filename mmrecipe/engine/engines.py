"""Engines: where shard functions run. `local` (a process pool, the embedded default) or `ray` (Ray tasks).

Both take a picklable shard function `fn(shard) -> result` and a list of shards, and return the
results in shard order: one result per shard, or several when a shard had to be split because a
record in it kills its worker process (segfault, `os._exit`, OOM kill). A split goes down to single
records; the driver turns a single record that still kills its worker into `crashed(shard, error)`
(a `worker_crashed` reject row), so the stage completes. Other exceptions of `fn` propagate.
`map(fn, items)` runs other picklable tasks the same way (a dedup index's bucket ranges), without splitting.

Neither engine schedules anything itself: `concurrent.futures` (spawn context) and Ray's own task
retries (`max_retries`, for lost nodes) do. Models belong in `worker_cached`, built once per worker
process. A local pool's processes exit when their driver dies, even by SIGKILL.
Ray is imported only by the `ray` engine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mmrecipe.engine.shards import Shard
from mmrecipe.settings import ENGINES

R = TypeVar("R")
T = TypeVar("T")
WORKER_CRASHED = "worker_crashed"
_CACHE: dict[Hashable, Any] = {}
_INSTALLED: list[Callable[[Shard], Any]] = []  # the shard function of this pool worker, sent once at its start


def worker_cached(key: Hashable, build: Callable[[], T]) -> T:
    """The object `build()` returns, built once per worker process for each `key` (e.g. a model and its config)."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Engine(Protocol):
    """Runs a shard function over shards; results in shard order (a list per shard: several if it was split)."""

    name: str

    def run(
        self, fn: Callable[[Shard], R], shards: Sequence[Shard], crashed: Callable[[Shard, str], R]
    ) -> list[list[R]]: ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items` as tasks (e.g. a dedup index's bucket ranges), results in order; exceptions propagate."""
        ...


def _run_installed(shard: Shard) -> Any:
    return _INSTALLED[0](shard)


def _start_worker(fn: Callable[[Shard], Any] | None = None) -> None:
    """In a new pool process: hold the shard function, and exit as soon as the driver is gone.

    A driver that is killed (SIGKILL, OOM) cannot shut its pool down, and idle pool processes do not notice.
    """
    if fn is not None:
        _INSTALLED[:] = [fn]
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(1)), daemon=True).start()


def _pool(workers: int, fn: Callable[[Shard], Any] | None = None) -> ProcessPoolExecutor:
    """A pool of spawned processes, holding `fn` if given (pickled once per process, not per shard: models)."""
    context = multiprocessing.get_context("spawn")  # no fork: the calling process may run threads (Dagster)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(fn,))


def _isolated(fn: Callable[[Shard], R], shard: Shard, crashed: Callable[[Shard, str], R]) -> list[R]:
    """`fn(shard)` in a fresh process of its own; a shard that kills it is halved until one record is left."""
    with _pool(1, fn) as pool:
        try:
            return [pool.submit(_run_installed, shard).result()]
        except BrokenProcessPool as e:
            error = f"worker process died: {e}"
    if shard.rows <= 1:
        return [crashed(shard, error)]
    first, second = shard.split()
    return _isolated(fn, first, crashed) + _isolated(fn, second, crashed)


@dataclass(frozen=True)
class LocalEngine:
    """A pool of `workers` processes (spawn) on this machine; inline in this process for one shard or worker."""

    workers: int = 1
    name: str = "local"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"the local engine needs at least 1 worker, got {self.workers}")

    def run(
        self, fn: Callable[[Shard], R], shards: Sequence[Shard], crashed: Callable[[Shard, str], R]
    ) -> list[list[R]]:
        if len(shards) <= 1 or self.workers == 1:
            return [[fn(s)] for s in shards]  # no pool to start; no isolation from a crashing record either
        out: list[list[R] | None] = [None] * len(shards)
        broken: list[int] = []
        with _pool(min(self.workers, len(shards)), fn) as pool:
            futures = [pool.submit(_run_installed, s) for s in shards]
            for i, future in enumerate(futures):
                try:
                    out[i] = [future.result()]
                except BrokenProcessPool:
                    broken.append(i)  # this shard or another one in flight killed a worker
        if broken:  # re-run each alone, so the one that kills its process is known
            with ThreadPoolExecutor(self.workers) as threads:
                redone = threads.map(lambda i: _isolated(fn, shards[i], crashed), broken)
                for i, results in zip(broken, redone, strict=True):
                    out[i] = results
        return [r for r in out if r is not None]

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 or self.workers == 1:
            return [fn(item) for item in items]
        with _pool(min(self.workers, len(items))) as pool:
            return list(pool.map(fn, items))


@dataclass(frozen=True)
class RayEngine:
    """Shards as Ray tasks on the cluster at `address` (empty: a local Ray started for the run).

    `num_cpus`/`num_gpus` (fractional allowed) are each task's resources; `max_retries` re-runs a task
    whose node or worker was lost. A Ray already initialised by the caller is used as it is.
    """

    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3
    workers: int = 0  # CPUs of a local Ray started for the run (0: all)
    name: str = "ray"

    @contextlib.contextmanager
    def _ray(self) -> Iterator[Any]:
        """The `ray` module, connected: to the configured cluster, or a local Ray started for this call."""
        import ray

        started = not ray.is_initialized()
        if started:
            options: dict[str, Any] = {"address": self.address or "local", "include_dashboard": False}
            if not self.address and self.workers:
                options["num_cpus"] = self.workers
            ray.init(**options)
        try:
            yield ray
        finally:
            if started:
                ray.shutdown()

    def run(
        self, fn: Callable[[Shard], R], shards: Sequence[Shard], crashed: Callable[[Shard, str], R]
    ) -> list[list[R]]:
        with self._ray() as ray:
            task = ray.remote(_call).options(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries
            )
            fn_ref = ray.put(fn)
            refs = [task.remote(fn_ref, s) for s in shards]
            return [self._results(ray, task, fn_ref, s, ref, crashed) for s, ref in zip(shards, refs, strict=True)]

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        with self._ray() as ray:
            task = ray.remote(_call).options(num_cpus=self.num_cpus, max_retries=self.max_retries)
            fn_ref = ray.put(fn)
            try:
                return ray.get([task.remote(fn_ref, item) for item in items])
            except ray.exceptions.RayTaskError as e:
                raise e.as_instanceof_cause() from None

    def _results(
        self, ray: Any, task: Any, fn_ref: Any, shard: Shard, ref: Any, crashed: Callable[[Shard, str], R]
    ) -> list[R]:
        try:
            return [ray.get(ref)]
        except ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None  # the shard function raised: a bug or bad config, not a crash
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as e:
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        if shard.rows <= 1:
            return [crashed(shard, error)]
        halves = shard.split()
        refs = [task.remote(fn_ref, h) for h in halves]
        return [r for h, r2 in zip(halves, refs, strict=True) for r in self._results(ray, task, fn_ref, h, r2, crashed)]


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def make_engine(
    name: str, workers: int = 0, address: str = "", num_cpus: float = 1.0, num_gpus: float = 0.0
) -> LocalEngine | RayEngine:
    """The engine named `name` (`local` or `ray`); `workers` 0 means every usable CPU."""
    if name == "local":
        return LocalEngine(workers or usable_cpus())
    if name == "ray":
        return RayEngine(address, num_cpus, num_gpus, workers=workers)
    raise ValueError(f"unknown engine {name!r}: use one of {ENGINES} (MMRECIPE_ENGINE)")
