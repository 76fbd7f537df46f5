"""Where the analysis runs: in this process, or in worker processes (later: a cluster).

An executor takes batches of files and yields each batch's FileResults as soon as that
batch is done (completion order, not input order); ``close()`` releases its workers. The
pipeline (``analyse_files``) and the index-aware layer above (``cached``) do not know
which executor they run on, so a cluster executor is one more class here. Batches are
small (each worker embeds several faces per network call) and handed out a few ahead of
the results being consumed; the file list is never materialised, so a 500,000-photo
drive costs no more memory than a small album.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Protocol

from facefinder.analyse import AnalysisJob, ModelCache, analyse_files
from facefinder.decode import DECODE_BUDGET_BYTES
from facefinder.records import FileKind, FileResult

Item = tuple[Path, str, FileKind]
Task = Callable[[list[Item], AnalysisJob], list[FileResult]]
BATCH_SIZE = 8


def available_cores() -> int:
    """All cores this process may use (respects CPU affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Windows, macOS
        return max(1, os.cpu_count() or 1)


# What one worker may need: its decode budget plus the models and Python (measured:
# ~250 MB resident per worker on the devset).
WORKER_BYTES = DECODE_BUDGET_BYTES + (300 << 20)


def available_memory() -> int | None:
    """Bytes of memory free for new processes now, or None when this OS does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if sys.platform == "win32":
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                        ("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                        ("page_total", ctypes.c_ulonglong), ("page_free", ctypes.c_ulonglong),
                        ("virtual_total", ctypes.c_ulonglong),
                        ("virtual_free", ctypes.c_ulonglong), ("extended", ctypes.c_ulonglong)]

        status = Status()
        status.length = ctypes.sizeof(Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
            return int(status.free)
        return None
    try:  # macOS and other Unixes
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def resolve_jobs(requested: int | None) -> int:
    """The number of worker processes: what was asked for, else one per core - never
    more than fit in the free memory (each may need ``WORKER_BYTES``) nor more than 4
    per core (``--jobs 1000`` would start 1000 processes that each load the models).

    The one place this is decided (the CLI, the API and the benchmarks all ask here).
    """
    if requested is not None and requested < 1:
        raise ValueError("--jobs must be 1 or more")
    cores = available_cores()
    free = available_memory()
    fits = max(1, free // WORKER_BYTES) if free is not None else 4 * cores
    return max(1, min(requested or cores, 4 * cores, fits))


class Executor(Protocol):
    """Runs ``analyse_files`` over batches; yields each batch's results when done."""

    jobs: int

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        ...

    def close(self) -> None:
        """Release workers (processes, cluster connections); a no-op when there are none."""


class InlineExecutor:
    """In this process, one batch after another: no start-up cost, easy to debug.

    Models come from the caller's ``ModelCache`` (a Finder's own), and may use several
    threads since nothing else competes for the cores.
    """

    jobs = 1

    def __init__(self, models: ModelCache) -> None:
        self.models = models

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        for batch in batches:
            yield analyse_files(batch, job, self.models)

    def close(self) -> None:
        """Nothing to release: the models belong to the caller's cache."""


CRASHED = ("crashed the program that read it (a damaged file, or one too big for this "
           "PC's memory); not tried again")


STARTUP_TIMEOUT_S = 300.0  # a worker imports numpy and onnxruntime: seconds, not minutes


class WorkersUnavailable(RuntimeError):
    """No worker process could be started (not: a file crashed one)."""


class ProcessExecutor:
    """``jobs`` worker processes of its own, each running single-threaded models.

    On a small CPU, N processes with one thread each beat one process with N threads
    (measured in the benchmark). Workers load each model once (``analyse.WORKER_MODELS``)
    and live as long as this executor, so a second search of the same Finder starts at
    once; ``close()`` ends them. The pool belongs to this object alone: two Finders never
    share or resize each other's workers. At most ``2 * jobs`` batches are in flight, so
    memory stays bounded however many files there are.
    """

    def __init__(self, jobs: int, task: Task = analyse_files) -> None:
        self.jobs = jobs
        self.task = task  # what a worker runs on a batch (a module-level function)
        self.problem: str | None = None  # set when the workers could not be used
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._inline: InlineExecutor | None = None

    def _workers(self) -> concurrent.futures.ProcessPoolExecutor:
        """The pool, started on first use and checked: a pool whose workers cannot even
        start (Python run from stdin, a broken install) must not be mistaken for files
        that crash them."""
        if self._pool is None:
            pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_ctrl_c)
            try:  # one task per worker, at once: they all start (and import) in parallel
                for ready in [pool.submit(_ready) for _ in range(self.jobs)]:
                    ready.result(timeout=STARTUP_TIMEOUT_S)
            except (BrokenProcessPool, concurrent.futures.TimeoutError, OSError) as exc:
                pool.shutdown(wait=False, cancel_futures=True)
                why = str(exc) or type(exc).__name__
                raise WorkersUnavailable(f"worker processes could not start ({why})") from None
            self._pool = pool
        return self._pool

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        """Results batch by batch; a worker that dies costs no file but the one that
        killed it (see ``suspects`` below). When no worker can start at all, the files
        are analysed in this process instead and ``problem`` says why."""
        todo = iter(batches)
        try:
            yield from self._run(todo, job)
        except WorkersUnavailable as exc:
            self.problem = f"{exc}; the photos were read in the main process instead"
            self._inline = self._inline or InlineExecutor(ModelCache())
            yield from self._inline.run(todo, job)

    def _run(self, todo: Iterator[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        single = AnalysisJob(job.model, job.models_dir, job.settings, threads=1)
        pending: dict[concurrent.futures.Future[list[FileResult]], list[Item]] = {}
        alone: set[concurrent.futures.Future[list[FileResult]]] = set()
        # A worker died (the OOM killer, a crashing decoder) and took the pool with it:
        # every file that was in flight is a suspect, tried again one at a time in a
        # fresh worker, so that a second crash names its file without doubt.
        suspects: list[Item] = []
        try:
            while True:
                if suspects and not pending:
                    item = suspects.pop(0)
                    future = self._workers().submit(self.task, [item], single)
                    pending[future] = [item]
                    alone.add(future)
                elif not suspects:
                    pool = self._workers()  # before taking batches: none is lost if it fails
                    for batch in itertools.islice(todo, 2 * self.jobs - len(pending)):
                        pending[pool.submit(self.task, batch, single)] = batch
                if not pending:
                    return
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    batch = pending.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        self.close()
                        if future in alone:  # it crashed a worker twice: never again
                            _path, rel, kind = batch[0]
                            yield [FileResult(rel=rel, kind=kind, error=CRASHED)]
                        else:
                            suspects.extend(batch)
                    alone.discard(future)
        finally:
            for future in pending:  # stopped early: drop what has not started
                future.cancel()

    def close(self) -> None:
        """End the worker processes (they finish the batch they are on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _ready() -> bool:
    """The first task of a new pool: proves its workers start and import the finder."""
    return True


def _ignore_ctrl_c() -> None:
    """Worker side: leave Ctrl-C to the main process, which stops us and still reports."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches(items: Iterable[Item], size: int = BATCH_SIZE) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last one shorter), lazily."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def analyse_all(items: Iterable[Item], job: AnalysisJob, executor: Executor
                ) -> Iterator[FileResult]:
    """FileResults for ``items`` in completion order, analysed by ``executor``."""
    for results in executor.run(batches(items), job):
        yield from results
