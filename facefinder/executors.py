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
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from facefinder.analyse import AnalysisJob, ModelCache, analyse_files
from facefinder.records import FileKind, FileResult

Item = tuple[Path, str, FileKind]
BATCH_SIZE = 8


def available_cores() -> int:
    """All cores this process may use (respects CPU affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Windows, macOS
        return max(1, os.cpu_count() or 1)


def resolve_jobs(requested: int | None) -> int:
    """The number of worker processes: what was asked for, else one per core.

    The one place this is decided (the CLI, the API and the benchmarks all ask here).
    """
    if requested is not None and requested < 1:
        raise ValueError("--jobs must be 1 or more")
    return requested or available_cores()


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


class ProcessExecutor:
    """``jobs`` worker processes of its own, each running single-threaded models.

    On a small CPU, N processes with one thread each beat one process with N threads
    (measured in the benchmark). Workers load each model once (``analyse.WORKER_MODELS``)
    and live as long as this executor, so a second search of the same Finder starts at
    once; ``close()`` ends them. The pool belongs to this object alone: two Finders never
    share or resize each other's workers. At most ``2 * jobs`` batches are in flight, so
    memory stays bounded however many files there are.
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _workers(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_ctrl_c)
        return self._pool

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        single = AnalysisJob(job.model, job.models_dir, job.settings, threads=1)
        pool = self._workers()
        pending: set[concurrent.futures.Future[list[FileResult]]] = set()
        todo = iter(batches)
        try:
            while True:
                for batch in itertools.islice(todo, 2 * self.jobs - len(pending)):
                    pending.add(pool.submit(analyse_files, batch, single))
                if not pending:
                    return
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in pending:  # stopped early: drop what has not started
                future.cancel()

    def close(self) -> None:
        """End the worker processes (they finish the batch they are on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


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
