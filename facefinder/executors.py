"""Where the analysis runs: in this process, or in worker processes (a Dask cluster:
``dask_executor``).

An executor takes batches of files and yields each batch's FileResults as soon as that
batch is done (completion order, not input order); ``close()`` releases its workers. The
pipeline (``analyse_files``) and the index-aware layer above (``cached``) do not know
which executor they run on, so a cluster executor is one more class. Batches are
small (each worker embeds several faces per network call) and handed out a few ahead of
the results being consumed; the file list is never materialised, so a 500,000-photo
drive costs no more memory than a small album.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Protocol

from facefinder.analyse import AnalysisJob, ModelCache, analyse_files
from facefinder.cores import available_cores
from facefinder.decode import DECODE_BUDGET_BYTES
from facefinder.messages import one_line
from facefinder.records import FileKind, FileResult

Item = tuple[Path, str, FileKind]
Task = Callable[[list[Item], AnalysisJob], list[FileResult]]
BATCH_SIZE = 8


# What one worker may need: its decode budget plus the models and Python (measured:
# ~250 MB resident per worker on the devset).
WORKER_BYTES = DECODE_BUDGET_BYTES + (300 << 20)


def available_memory() -> int | None:
    """Bytes of memory free for new processes now (psutil, on every OS), lowered to what a
    container's memory limit still allows; None when it cannot be told."""
    try:
        import psutil

        free: int | None = int(psutil.virtual_memory().available)
    except Exception:  # psutil missing or unsupported here
        free = None
    try:  # cgroup v2 (containers): the limit, not the host's free memory, is what counts
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            room = max(0, int(limit) - used)
            free = room if free is None else min(free, room)
    except (OSError, ValueError):
        pass
    return free


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
    most = 61 if sys.platform == "win32" else 4 * cores  # Windows' process-pool limit
    return max(1, min(requested or cores, 4 * cores, most, fits))


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


STARTUP_TIMEOUT_S = 300.0  # a worker imports numpy and onnxruntime: seconds, not minutes
TASK_FAILED = "cannot read file: the program that reads photos failed on it, tried again next time"
RESTART_REASON = ("cannot read file: no worker process could be started to read it after a "
                  "crash (the PC may be out of memory); it is tried again next time")
CRASHED = ("crashed the program that read it (a damaged file, or one too big for this "
           "PC's memory); not tried again")
STOPPED = ("cannot read file: the program that read it was stopped from outside (the PC "
           "ran out of memory, or another program ended it); it is tried again next time")


class WorkersUnavailable(RuntimeError):
    """No worker process could be started (not: a file crashed one)."""


class ClusterError(RuntimeError):
    """A cluster executor cannot go on (scheduler unreachable, no workers, workers
    running another finder version); ``str()`` is one line. Here, not in the cluster
    module, so the command line can catch it without importing Dask."""


class ProcessExecutor:
    """``jobs`` worker processes of its own, each running single-threaded models.

    On a small CPU, N processes with one thread each beat one process with N threads
    (measured in the benchmark). Workers load each model once (``analyse.WORKER_MODELS``)
    and live as long as this executor, so a second search of the same Finder starts at
    once; ``close()`` ends them. The pool belongs to this object alone: two Finders never
    share or resize each other's workers. At most ``2 * jobs`` batches are in flight, so
    memory stays bounded however many files there are.

    A worker that dies (the OOM killer, a crashing decoder) or a task that fails takes no
    file with it: every file of the batches that were in flight becomes a suspect and is
    read again on its own, in a pool of one worker, so that a second failure names its
    file without doubt. That file is reported as unreadable (and so kept in the index as
    such, never tried again); the others are read as usual.
    """

    def __init__(self, jobs: int, task: Task = analyse_files,
                 fallback: Executor | None = None) -> None:
        self.jobs = jobs
        self.task = task  # what a worker runs on a batch (a module-level function)
        self.fallback = fallback  # where files go when no worker can start at all
        self.problem: str | None = None  # set when the workers could not be used
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._solo: concurrent.futures.ProcessPoolExecutor | None = None

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        """Results batch by batch, in completion order."""
        todo = iter(batches)
        threads = max(1, available_cores() // self.jobs)
        worker_job = dataclasses.replace(job, threads=threads)
        try:
            if self.problem is None:  # once no worker could start, do not try again
                yield from self._run(todo, worker_job)
                return
        except WorkersUnavailable as exc:  # not one worker starts: read in this process
            self.problem = f"{exc}; the photos were read in the main process instead"
        inline = self.fallback or InlineExecutor(ModelCache())
        yield from inline.run(todo, dataclasses.replace(job, threads=available_cores()))

    def _run(self, todo: Iterator[list[Item]], job: AnalysisJob) -> Iterator[list[FileResult]]:
        pending: dict[concurrent.futures.Future[list[FileResult]], list[Item]] = {}
        suspects: list[Item] = []
        try:
            while True:
                if suspects and not pending:
                    yield self._alone(suspects[0], job)
                    suspects.pop(0)
                    if not suspects:  # the last one: its pool is not kept idle
                        self._end_solo()
                    continue
                if not suspects:
                    pool = self._workers()  # before taking batches: none is lost
                    for batch in itertools.islice(todo, 2 * self.jobs - len(pending)):
                        try:
                            pending[_submit(pool, self.task, batch, job)] = batch
                        except BrokenProcessPool:  # a worker died while we were away
                            suspects += batch + _drop(pending, self)
                            break
                    if suspects:
                        continue
                if not pending:
                    return
                done, _ = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    batch = pending.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        suspects += batch + _drop(pending, self)
                        break
                    except Exception:  # the task failed (a model, memory): read alone
                        suspects += batch
                        continue
                    yield results
        except WorkersUnavailable:
            if not pending and not suspects:
                raise  # nothing started yet: the caller reads the files here instead
            lost = suspects + [item for batch in pending.values() for item in batch]
            yield [FileResult(rel=rel, kind=kind, error=RESTART_REASON)
                   for _path, rel, kind in lost]
            raise
        finally:
            for future in pending:  # stopped early: drop what has not started
                future.cancel()

    def _alone(self, item: Item, job: AnalysisJob) -> list[FileResult]:
        """Read one suspect file in a pool of its own, proven alive just before: a crash
        then is the file's doing. Any other failure is not held against the file: it is
        reported as a passing one, not kept in the index, and tried again next time."""
        _path, rel, kind = item
        for _attempt in range(2):
            try:
                if self._solo is None:
                    self._solo = _start_pool(1)
                self._solo.submit(_ready).result(timeout=STARTUP_TIMEOUT_S)  # alive now?
            except WorkersUnavailable:
                return [FileResult(rel=rel, kind=kind, error=RESTART_REASON)]
            except (BrokenProcessPool, concurrent.futures.TimeoutError):
                self._end_solo()  # it died idle (not this file's doing): a fresh one
                continue
            try:
                return self._solo.submit(self.task, [item], job).result()
            except BrokenProcessPool:
                outside = _stopped_from_outside(self._solo)
                self._end_solo()
                return [FileResult(rel=rel, kind=kind, error=STOPPED if outside else CRASHED)]
            except Exception as exc:
                reason = f"{TASK_FAILED} ({one_line(exc, 160)})"
                return [FileResult(rel=rel, kind=kind, error=reason)]
            except BaseException:  # Ctrl-C: the task may still be queued there
                self._end_solo()
                raise
        return [FileResult(rel=rel, kind=kind, error=RESTART_REASON)]

    def _end_solo(self) -> None:
        if self._solo is not None:
            _stop_pool(self._solo)
            self._solo = None

    def _workers(self) -> concurrent.futures.ProcessPoolExecutor:
        """The pool, started on first use and checked (see ``_start_pool``)."""
        if self._pool is None:
            self._pool = _start_pool(self.jobs)
        return self._pool

    def close(self) -> None:
        """End the worker processes now, also those busy with a batch (after Ctrl-C they
        hold nothing the main process needs, and waiting for them delays the exit)."""
        for pool in (self._pool, self._solo):
            if pool is not None:
                _stop_pool(pool)
        self._pool = self._solo = None


def _stopped_from_outside(pool: concurrent.futures.ProcessPoolExecutor) -> bool:
    """Whether the pool's worker was ended by SIGKILL or SIGTERM: another program's doing
    (the kernel's out-of-memory killer, a task manager, a shutdown), not the file's. A
    file that breaks its reader makes it die of SIGSEGV, SIGBUS or SIGABRT, or exit with
    a status; a file too big for the memory is refused from its header before it is
    decoded (``decode.DECODE_BUDGET_BYTES``). Marking a good photo "not tried again"
    because the PC was short of memory that moment would lose it for good, since the
    verdict travels with the index. POSIX only (elsewhere: False, a crash as before);
    reads the pool's processes, which ``concurrent.futures`` keeps after it broke."""
    if os.name != "posix":
        return False
    processes = getattr(pool, "_processes", None) or {}
    outside = (-signal.SIGKILL, -signal.SIGTERM)
    for process in list(processes.values()):
        # Its exit status is known once it is reaped, by this thread or by the pool's own
        # (which joins it too: the one that loses that race sees no status yet, and the
        # winner records it on the same Process).
        deadline = time.monotonic() + 5
        while process.exitcode is None and time.monotonic() < deadline:
            process.join(timeout=0.05)
        if process.exitcode in outside:
            return True
    return False


def _drop(pending: dict, executor: ProcessExecutor) -> list[Item]:
    """After the pool broke: every file in flight becomes a suspect; the pool is ended."""
    items = [item for batch in pending.values() for item in batch]
    pending.clear()
    if executor._pool is not None:
        _stop_pool(executor._pool)
        executor._pool = None
    return items


def _start_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """A pool of spawned workers that are known to start.

    A pool whose workers cannot even start (Python run from stdin, a broken install, no
    memory left) must not be mistaken for files that crash them: one readiness task per
    worker runs first (they start, and import the finder, in parallel).
    """
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start)
    try:
        for ready in [_submit(pool, _ready) for _ in range(workers)]:
            ready.result(timeout=STARTUP_TIMEOUT_S)
    except (BrokenProcessPool, concurrent.futures.TimeoutError, OSError) as exc:
        _stop_pool(pool)
        why = str(exc) or type(exc).__name__
        raise WorkersUnavailable(f"worker processes could not start ({why})") from None
    except BaseException:
        _stop_pool(pool)
        raise
    return pool


def _submit(pool: concurrent.futures.ProcessPoolExecutor, task: Callable, *args: object
            ) -> concurrent.futures.Future:
    """``pool.submit``, with Ctrl-C held back (``_ctrl_c_held``) while the pool is still
    short of its workers: a submit then starts one. Once they all run, a plain submit
    (no signal handler swapped for every batch)."""
    if len(getattr(pool, "_processes", None) or ()) >= getattr(pool, "_max_workers", 0):
        return pool.submit(task, *args)
    with _ctrl_c_held():
        return pool.submit(task, *args)


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C held back (not lost: it arrives when this ends) while worker processes may
    be started (a submit starts one when none is idle), so that they start with it
    blocked: they leave Ctrl-C to the main process, which ends them, and a Ctrl-C pressed
    while one is still starting (between its launch and its start-up data) makes it print
    a traceback. Blocked in this thread, which the workers inherit; and, in the main
    thread, only noted by Python's handler meanwhile, since another thread (numpy's
    BLAS threads) may take the signal and Python would raise it here at once. POSIX
    only."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    pressed: list[int] = []
    handler = (signal.getsignal(signal.SIGINT)
               if threading.current_thread() is threading.main_thread() else None)
    if callable(handler):
        signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if callable(handler):
            signal.signal(signal.SIGINT, handler)
            if pressed:
                signal.raise_signal(signal.SIGINT)  # to the handler it was meant for


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting for its running tasks: its workers are ended."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14 and newer
        pool.terminate_workers()
        return
    workers = dict(getattr(pool, "_processes", None) or {})  # before shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers.values():
        if process.is_alive():
            process.terminate()
    for process in workers.values():
        process.join(timeout=2.0)  # gone before the interpreter's own exit joins them


def _ready() -> bool:
    """The first task of a new pool: proves its workers start and import the finder."""
    return True


def _worker_start() -> None:
    """Worker side: leave Ctrl-C to the main process (which stops us and still reports),
    and end when it ends: a finder killed hard (``kill -9``, the OOM killer) must not
    leave workers holding hundreds of MB each behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def batches(items: Iterable[Item], size: int = BATCH_SIZE, *,
            workers: int | Callable[[], int] = 1) -> Iterator[list[Item]]:
    """``items`` in lists of ``size`` (the last one shorter), lazily.

    When ``items`` is a list (a round of files whose end is known) and several
    ``workers`` share it, the last batches shrink (never more than a ``2 * workers``th of
    what is left, the batches in flight) so that the workers finish it together: with
    whole batches to the end, one worker read its last 8 photos while the other had
    nothing left (a second of one core on 12 MP photos, at the end of every round).
    ``workers`` may be a function, asked when the first batch is taken (a cluster counts
    its workers when its run starts)."""
    if callable(workers):
        workers = workers()
    if isinstance(items, list) and workers > 1:
        start = 0
        while start < len(items):
            take = max(1, min(size, -(-(len(items) - start) // (2 * workers))))
            yield items[start:start + take]
            start += take
        return
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def analyse_all(items: Iterable[Item], job: AnalysisJob, executor: Executor
                ) -> Iterator[FileResult]:
    """FileResults for ``items`` in completion order, analysed by ``executor``."""
    for results in executor.run(batches(items, workers=lambda: executor.jobs), job):
        yield from results
