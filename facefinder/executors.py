"""Where the analysis runs: in this process, or in worker processes (later: a cluster).

An executor takes batches of files and yields each batch's FileResults as soon as that
batch is done (completion order, not input order). The pipeline (``analyse_files``) and
the index-aware layer above (``cached``) do not know which executor they run on, so a
cluster executor is one more class here. Batches are small (each worker embeds several
faces per network call) and handed out a few ahead of the results being consumed; the
file list is never materialised, so a 500,000-photo drive costs no more memory than a
small album.
"""

from __future__ import annotations

import itertools
import os
import signal
import warnings
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


class ProcessExecutor:
    """``jobs`` joblib (loky) worker processes, each running single-threaded models.

    On a small CPU, N processes with one thread each beat one process with N threads
    (measured in the benchmark). Workers load each model once (``analyse.WORKER_MODELS``).
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        from joblib import Parallel, delayed

        single = AnalysisJob(job.model, job.models_dir, job.settings, threads=1)
        runner = Parallel(n_jobs=self.jobs, backend="loky", return_as="generator_unordered",
                          pre_dispatch=f"{2 * self.jobs}", batch_size=1)
        with warnings.catch_warnings():
            # Stopping early (Ctrl-C, cancel) drops the batches in flight on purpose; the
            # index keeps what was done, so joblib's advice about it is only noise.
            warnings.filterwarnings("ignore", message=".*tasks which were still being",
                                    category=UserWarning)
            yield from runner(delayed(_in_worker)(batch, single) for batch in batches)


def _in_worker(batch: list[Item], job: AnalysisJob) -> list[FileResult]:
    """Worker side: leave Ctrl-C to the main process, which stops us and still reports."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return analyse_files(batch, job)


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
