"""The analysis on a Dask cluster (``--cluster tcp://host:8786``): one more executor.

The main process keeps everything it owns in a local run: it walks the folders, asks the
face index, and is the only writer of the index. Only ``analyse_files`` runs on the
workers, batch by batch, through ``dask.distributed``; each batch's results come back as
soon as it is done, and ``cached.Analyser`` records them as they arrive, so a cluster run
is resumed exactly like a local one.

What crosses to a worker, and why:

- The model files, once per worker, from the main process's models folder (a worker
  plugin, so a worker that joins or is restarted later gets them too). Every file is
  checked against the main process's ``models/manifest.json`` sha256 before it is sent
  and again on the worker before it is written; a worker never fetches a model.
- For each file: either where the worker reads it (its root as the worker sees it, and a
  path below it without ``..``: a worker cannot be sent outside the roots), or, with
  ``send_files``, its bytes and modification time (nothing needs to be shared; at most
  ``SEND_BUDGET`` bytes are in flight).
- The sha256 of each of the finder's own source files: a worker whose analysis modules
  differ would compute other embeddings, and is refused instead of silently mixing them
  into the index.

Dask itself redoes the tasks of a worker that dies (``distributed.scheduler.allowed-
failures`` times); a batch that still fails is read again one file at a time, alone on
the cluster, so that a file that kills every worker it meets ends as one unreadable
entry, as in ``executors.ProcessExecutor``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any

from distributed import Client, wait
from distributed.client import FutureCancelledError
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.scheduler import KilledWorker

from facefinder.analyse import WORKER_MODELS, AnalysisJob, analyse_files
from facefinder.executors import (
    CRASHED,
    TASK_FAILED,
    ClusterError,
    Item,
    Task,
    available_cores,
)
from facefinder.messages import one_line
from facefinder.models.catalog import MANIFEST, read_manifest
from facefinder.records import FileKind, FileResult

CONNECT_TIMEOUT_S = 10.0  # the scheduler answers in milliseconds on a LAN
WORKERS_TIMEOUT_S = 120.0  # no worker at all for this long: the run cannot go on
POLL_S = 5.0  # how often a wait for results looks at the cluster's health
SEND_BUDGET = 256 << 20  # bytes of photos in flight with --send-files (bounded memory)
SEND_LIMIT = 1 << 30  # one file bigger than this is not sent (it would be held whole)
PLUGIN_PREFIX = "facefinder-models-"
NOT_SHARED = ("cannot read file: it is under no --cluster-root-map folder, so the cluster's "
              "workers cannot see it (map its folder, or use --send-files)")


class WorkerNotReady(RuntimeError):
    """Raised on a worker that cannot analyse for this run; never a file's fault."""


# --------------------------------------------------------------------------- root map


def parse_root_map(entries: Sequence[str]) -> list[tuple[Path, str]]:
    """``LOCAL=REMOTE`` strings as (absolute local folder, remote folder), longest first.

    REMOTE is kept as text: it names a folder on the workers' machines, which may run
    another operating system. ValueError (one line) for an entry that is no mapping.
    """
    mapped: list[tuple[Path, str]] = []
    for entry in entries:
        local, sep, remote = entry.partition("=")
        if not sep or not local.strip() or not remote.strip():
            raise ValueError(f"--cluster-root-map {entry}: give LOCAL=REMOTE, e.g. "
                             "/home/me/Photos=/mnt/photos")
        mapped.append((Path(os.path.abspath(local.strip())), remote.strip()))
    return sorted(mapped, key=lambda pair: len(pair[0].parts), reverse=True)


@dataclass(frozen=True)
class Remote:
    """A file the worker reads itself: ``relpath`` ('/'-separated) below ``root``."""

    root: str
    relpath: str
    rel: str
    kind: FileKind


@dataclass(frozen=True)
class Sent:
    """A file's bytes, sent by the main process (``--send-files``)."""

    name: str
    data: bytes
    mtime_ns: int
    rel: str
    kind: FileKind


Shipped = Remote | Sent


def where_workers_read(item: Item, root_map: list[tuple[Path, str]]) -> Remote | None:
    """Where a worker finds ``item``: below the mapped root that holds it, or - with no
    map - at the same path (a shared file system); None when no mapped root holds it."""
    path, rel, kind = item
    absolute = Path(os.path.abspath(path))
    if not root_map:
        parts = PurePosixPath(rel).parts
        root = absolute.parents[len(parts) - 1] if parts else absolute.parent
        return Remote(str(root), "/".join(absolute.parts[len(root.parts):]), rel, kind)
    for local, remote in root_map:
        if absolute.is_relative_to(local):
            below = absolute.relative_to(local)
            return Remote(remote, "/".join(below.parts), rel, kind)
    return None


# --------------------------------------------------------------------------- worker side


def _sha256(data: bytes) -> str:
    """Hex sha256 of bytes in memory: model files are checked on both ends by it."""
    return hashlib.sha256(data).hexdigest()


def _sources() -> dict[str, str]:
    """{path below the package: sha256} of every Python file of the finder."""
    package = Path(__file__).resolve().parent
    return {source.relative_to(package).as_posix(): _sha256(source.read_bytes())
            for source in sorted(package.rglob("*.py"))}


# The finder's code as this process loaded it (taken when the finder is imported, not
# later from the disk): a worker compares the modules it runs with the main process's.
SOURCES = _sources()
# (the main process's sources' digest, the modules loaded here) -> what differs: a model
# module imported later (vision/facenet.py at the first batch) is checked then too
_SAME: dict[tuple[str, frozenset[str]], str | None] = {}
_LOADING = threading.Lock()  # a worker with several threads loads each model once


def code_differences(main: dict[str, str]) -> str | None:
    """The finder modules this process runs that differ from ``main``'s, or None.

    Only the modules loaded here count (a worker never loads the command line or the
    review page), so an edit elsewhere does not refuse a worker that computes the same.
    """
    tag = _sha256(repr(sorted(main.items())).encode())
    names = frozenset(name for name in list(sys.modules) if name.startswith("facefinder"))
    if (tag, names) not in _SAME:
        package = Path(__file__).resolve().parent
        loaded = set()
        for name in names:
            where = getattr(sys.modules.get(name), "__file__", None)
            if where:
                with contextlib.suppress(ValueError):
                    loaded.add(Path(where).resolve().relative_to(package).as_posix())
        differ = sorted(rel for rel in loaded if main.get(rel) != SOURCES.get(rel))
        _SAME[tag, names] = ", ".join(differ) if differ else None
    return _SAME[tag, names]


class ModelFiles(WorkerPlugin):
    """Worker plugin: the main process's model files, written once into the worker's
    scratch folder (named by their hashes, so later runs and restarted workers reuse
    them) and checked by sha256 before anything loads them.

    Registered with the scheduler, so a worker that joins or is restarted mid-run gets
    them too; ``folder`` is set only when every file arrived intact.
    """

    def __init__(self, files: dict[str, bytes], hashes: dict[str, str]) -> None:
        self.files = files
        self.hashes = hashes
        self.folder: str | None = None
        self.problem: str | None = None

    def setup(self, worker: Any) -> None:
        """Dask calls this on each worker as it joins: write the model files into a folder named
        by their hashes (each checked, each written beside itself and renamed), then the
        manifest; a failure is kept in ``problem`` so the batch says why instead of the
        worker dying."""
        tag = _sha256("|".join(f"{n}={h}" for n, h in sorted(self.hashes.items())).encode())
        folder = Path(worker.local_directory) / "facefinder-models" / tag[:16]
        try:
            for name, data in self.files.items():
                if _sha256(data) != self.hashes[name]:
                    raise WorkerNotReady(f"model file {name} arrived damaged")
                target = folder / name
                if target.is_file() and _sha256(target.read_bytes()) == self.hashes[name]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                scratch = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
                scratch.write_bytes(data)
                os.replace(scratch, target)
            manifest = folder / f".{MANIFEST}.{uuid.uuid4().hex}"
            manifest.write_text(json.dumps({"files": self.hashes}), encoding="utf-8")
            os.replace(manifest, folder / MANIFEST)
            self.folder = str(folder)
        except (OSError, WorkerNotReady) as exc:
            self.problem = f"cannot store the model files in {folder}: {exc}"
        self.files = {}  # written: the worker keeps no second copy in memory


def _model_files(job: AnalysisJob) -> list[tuple[Path, str]]:
    """(folder, file name) of every model file ``job`` loads: its face model's, and the
    object detector's with ``--objects``."""
    files = [(job.models_dir, name) for name in dict.fromkeys(job.model.files)]
    if job.objects is not None:
        files.append((job.objects.models_dir, job.objects.spec.file))
    return files


def _on_worker(job: AnalysisJob, folder: Path, threads: int) -> AnalysisJob:
    """``job`` with every models folder mapped to the worker's checked copy."""
    objects = None if job.objects is None else replace(job.objects, models_dir=folder)
    return replace(job, models_dir=folder, threads=threads, objects=objects)


def _stat(path: Path) -> tuple[int, int]:
    """(size, mtime) of a model file, (-1, -1) if it cannot be read: the stamp that lets a
    run skip reading and hashing model files unchanged since they were last checked (a
    missing file changes the stamp instead of raising here; the check then says why)."""
    try:
        info = path.stat()
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns)


def _registered_plugins(dask_scheduler: Any) -> list[str]:
    """Scheduler side: the names of the worker plugins it gives every worker."""
    return list(dask_scheduler.worker_plugins)


def _open(shipped: Shipped, scratch: Path) -> Path:
    """The path the worker reads ``shipped`` from; a sent file is written to ``scratch``
    with its name and modification time (the photo's fallback capture time)."""
    if isinstance(shipped, Sent):
        # The name is the main machine's: a "\\" or ":" in it (plain characters on Linux)
        # is a separator or a drive on a Windows worker, and must not lead out of scratch.
        name = "".join("_" if c in _SEPARATORS else c for c in shipped.name)
        target = scratch / f"{uuid.uuid4().hex[:8]}-{name}"
        target.write_bytes(shipped.data)
        os.utime(target, ns=(shipped.mtime_ns, shipped.mtime_ns))
        return target
    parts = PurePosixPath(shipped.relpath).parts
    here = _NATIVE(*parts) if parts else _NATIVE()  # as this worker's OS reads it
    if (not parts or PurePosixPath(shipped.relpath).is_absolute() or ".." in parts
            or here.is_absolute() or here.drive or ".." in here.parts):
        raise WorkerNotReady(f"refused a path outside the photo roots: {shipped.relpath!r}")
    return Path(shipped.root).joinpath(*parts)


# How this worker's OS splits a path (a module value, so a test can be a Windows worker)
_NATIVE: type[PurePath] = PureWindowsPath if os.name == "nt" else PurePosixPath
_SEPARATORS = frozenset("/\\:")


_TUNED: list[bool] = []  # whether this worker process's allocator was set up already


def _undo_malloc_trim() -> None:
    """Give glibc's allocator back its large-block behaviour in a worker started by a
    Dask nanny.

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory
    back to the system sooner). Setting it also pins the size above which glibc maps
    each block afresh at 128 KiB, so every decoded photo and tensor is mapped, zeroed and
    unmapped again: measured on the devset, that took a 2-worker run from 20 s to 32 s
    (8.5 s of system time per worker). Raising the mapping and trimming thresholds to
    what glibc would reach on its own (32 and 64 MiB) keeps the blocks for reuse.
    """
    if _TUNED or not sys.platform.startswith("linux") or (
            "MALLOC_TRIM_THRESHOLD_" not in os.environ):
        return
    _TUNED.append(True)
    import ctypes

    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to do
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(m_mmap_threshold, 32 << 20)
        libc.mallopt(m_trim_threshold, 64 << 20)


def run_batch(batch: list[Shipped], job: AnalysisJob, plugin: str, code: dict[str, str],
              expected: dict[str, str], per_host: dict[str, int],
              task: Task = analyse_files) -> list[FileResult]:
    """What a worker runs for one batch: the main process's ``job`` with the models
    folder mapped to this worker's checked copy, over the batch's files.

    ``per_host``: the cluster's task threads on each machine. The machine's cores are
    shared among them (``dask worker --nworkers 2`` on two cores: one each), as
    ``ProcessExecutor`` shares them among its processes."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    worker = get_worker()
    differ = code_differences(code)
    if differ:
        raise WorkerNotReady(f"worker {worker.address} runs another version of the finder "
                             f"({differ} differ); start every worker from the same finder "
                             "folder")
    models = worker.plugins.get(plugin)
    if models is None or models.folder is None:
        why = getattr(models, "problem", None) or "the model files did not arrive"
        raise WorkerNotReady(f"worker {worker.address}: {why}")
    if read_manifest(Path(models.folder)) != expected:
        raise WorkerNotReady(f"worker {worker.address}: its model files are not the ones "
                             "of this run")
    here = per_host.get(get_address_host(worker.address), worker.state.nthreads)
    threads = max(1, available_cores() // max(1, here))
    local = _on_worker(job, Path(models.folder), threads)
    with _LOADING:
        _undo_malloc_trim()
        WORKER_MODELS.get(local)  # once per worker, not per batch
    scratch = Path(tempfile.mkdtemp(prefix="facefinder-", dir=worker.local_directory))
    try:
        items = [(_open(s, scratch), s.rel, s.kind) for s in batch]
        return task(items, local)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- main side


class ClusterExecutor:
    """Runs the analysis on the Dask cluster whose scheduler is at ``address``.

    ``root_map``: where the workers see the photo roots (``parse_root_map``); empty when
    they see them at the main process's paths. ``send_files``: every file's bytes are
    sent instead, and the workers read nothing from disk (the root map is not used).
    ``jobs`` is the cluster's number of worker threads; at most ``2 * jobs`` batches are
    in flight. ``close()`` disconnects; the cluster and its workers stay up.
    """

    def __init__(self, address: str, root_map: list[tuple[Path, str]] | None = None,
                 send_files: bool = False, task: Task = analyse_files) -> None:
        self.address = address
        self.root_map = root_map or []
        self.send_files = send_files
        self.task = task
        self.problem: str | None = None
        # the model files last checked (path, size, mtime) and their plugin's name
        self._checked: tuple[tuple, tuple[str, dict[str, str]]] | None = None
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S,
                                 set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"--cluster {address}: cannot reach the Dask scheduler "
                               f"({one_line(exc, 120)})") from None
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            self.client.close()
            raise ClusterError(f"--cluster {address}: no worker joined the scheduler in "
                               f"{WORKERS_TIMEOUT_S:.0f} s (start some: dask worker "
                               f"{address})") from None
        self._check_code()
        self.jobs = self._threads()

    def _check_code(self) -> None:
        """The scheduler (which unpacks every task) and each worker must import this
        finder, in this version: checked once, so a misconfigured cluster is one clear
        error instead of every file failing on its own."""
        try:
            probe = self.client.submit(code_differences, SOURCES, pure=False)
            found = {"a worker": probe.result(timeout=WORKERS_TIMEOUT_S),
                     **self.client.run(code_differences, SOURCES)}
        except Exception as exc:
            self.client.close()
            raise ClusterError(
                f"--cluster {self.address}: the scheduler and every worker must be able to "
                "import the finder: start them in the finder's folder with PYTHONPATH set "
                f"to it, from the same requirements ({one_line(exc, 160)})") from None
        for worker, differ in found.items():
            if differ:
                self.client.close()
                raise ClusterError(f"--cluster {self.address}: {worker} runs another "
                                   f"version of the finder ({differ} differ); start every "
                                   "worker from the same finder folder")

    def _threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def _per_host(self) -> dict[str, int]:
        """{machine: task threads of all its workers} (see ``run_batch``)."""
        from distributed.comm import get_address_host

        hosts: dict[str, int] = {}
        for address, threads in self.client.nthreads().items():
            host = get_address_host(address)
            hosts[host] = hosts.get(host, 0) + threads
        return hosts

    # ------------------------------------------------------------------ models

    def _models(self, job: AnalysisJob) -> tuple[str, dict[str, str]]:
        """The plugin that gives every worker this run's model files (checked here
        against the manifest first), registered unless the cluster has it already."""
        wanted = _model_files(job)
        stamp = tuple((str(folder / name), *_stat(folder / name)) for folder, name in wanted)
        if self._checked is not None and self._checked[0] == stamp:
            name, expected = self._checked[1]  # a run reaches here once per few hundred
            if name in self.client.run_on_scheduler(_registered_plugins):  # files
                return name, expected
        files: dict[str, bytes] = {}
        expected = {}
        for folder, file in wanted:
            manifest = read_manifest(folder)
            data = (folder / file).read_bytes()
            if file not in manifest or _sha256(data) != manifest[file]:
                raise ClusterError(f"model file {file} in {folder} does not match its "
                                   "manifest sha256; run --fetch-models first")
            files[file], expected[file] = data, manifest[file]
        # Named by the files' hashes and left registered: a second finder run (now, or
        # later) with the same models sends nothing again, and taking it back at the end
        # of one run would pull it from under another run on the same cluster.
        name = PLUGIN_PREFIX + _sha256(repr(sorted(expected.items())).encode())[:16]
        if name not in self.client.run_on_scheduler(_registered_plugins):
            self.client.register_plugin(ModelFiles(files, expected), name=name)
        self._checked = (stamp, (name, expected))
        return name, expected

    # ------------------------------------------------------------------ files

    def _ship(self, batch: list[Item]) -> tuple[list[Shipped], list[FileResult], int]:
        """The batch as the workers get it, results for files that cannot go (unreadable
        here, under no mapped root, too big to send), and the bytes sent."""
        shipped: list[Shipped] = []
        local: list[FileResult] = []
        sent = 0
        for item in batch:
            path, rel, kind = item
            if not self.send_files:
                remote = where_workers_read(item, self.root_map)
                if remote is None:
                    local.append(FileResult(rel=rel, kind=kind, error=NOT_SHARED))
                else:
                    shipped.append(remote)
                continue
            if kind == "other":  # never read: only counted
                shipped.append(Sent(path.name, b"", 0, rel, kind))
                continue
            try:
                size = os.stat(path).st_size
                if size > SEND_LIMIT:
                    local.append(FileResult(rel=rel, kind=kind, error=(
                        f"cannot read file: {size >> 20} MiB is too big to send to the "
                        "cluster (--send-files); share its folder with the workers")))
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
                    mtime = os.fstat(handle.fileno()).st_mtime_ns
            except OSError as exc:
                local.append(FileResult(rel=rel, kind=kind,
                                        error=f"cannot read file: {exc.strerror or exc}"))
                continue
            shipped.append(Sent(path.name, data, mtime, rel, kind))
            sent += len(data)
        return shipped, local, sent

    # ------------------------------------------------------------------ running

    def run(self, batches: Iterable[list[Item]], job: AnalysisJob
            ) -> Iterator[list[FileResult]]:
        """Results batch by batch, in completion order (see ``executors.Executor``)."""
        plugin, expected = self._models(job)
        code = SOURCES
        self.jobs = self._threads()
        per_host = self._per_host()
        todo = iter(batches)
        pending: dict[Any, tuple[list[Item], int]] = {}  # future -> (batch, bytes sent)
        suspects: list[Item] = []
        in_flight = 0

        def submit(batch: list[Item]) -> list[FileResult]:
            nonlocal in_flight
            shipped, local, sent = self._ship(batch)
            if shipped:
                future = self.client.submit(run_batch, shipped, job, plugin, code, expected,
                                            per_host, self.task, pure=False,
                                            key=f"facefinder-batch-{uuid.uuid4().hex}")
                going = {s.rel for s in shipped}
                kept = [item for item in batch if item[1] in going]
                pending[future] = (kept, sent)
                in_flight += sent
            return local

        try:
            while True:
                if suspects and not pending:  # alone on the cluster: its failure is its own
                    local = submit([suspects.pop(0)])
                    if local:
                        yield local
                    if pending:
                        yield self._alone(pending)
                        in_flight = 0
                    continue
                if not suspects:
                    while len(pending) < 2 * self.jobs and (
                            in_flight < SEND_BUDGET or not pending):
                        batch = next(todo, None)
                        if batch is None:
                            break
                        local = submit(batch)
                        if local:
                            yield local
                if not pending:
                    if suspects:
                        continue
                    return
                done = self._wait(pending)
                for future in done:
                    batch, sent = pending.pop(future)
                    in_flight -= sent
                    try:
                        results = future.result()
                    except WorkerNotReady as exc:
                        raise ClusterError(str(exc)) from None
                    except KilledWorker:  # it killed every worker it met: one file did?
                        suspects += batch
                        continue
                    except FutureCancelledError as exc:
                        raise ClusterError(f"lost the cluster at {self.address} "
                                           f"({one_line(exc, 120)})") from None
                    except Exception:  # the task failed on a file: read them alone
                        suspects += batch
                        continue
                    yield results
        finally:
            if pending:  # stopped early (Ctrl-C, cancel, an error): nothing more is read
                with contextlib.suppress(Exception):
                    self.client.cancel(list(pending), force=True)

    def _wait(self, pending: dict) -> set:
        """The futures done next; ClusterError when the cluster has had no worker for
        ``WORKERS_TIMEOUT_S`` (tasks would wait for ever)."""
        idle = 0.0
        while True:
            try:
                with self.client.as_current():  # this client, not a process-wide default
                    done, _ = wait(list(pending), timeout=POLL_S,
                                   return_when="FIRST_COMPLETED")
                return done
            except TimeoutError:
                pass
            try:
                workers = self.client.nthreads()
            except OSError as exc:
                raise ClusterError(f"lost the cluster at {self.address} "
                                   f"({one_line(exc, 120)})") from None
            idle = 0.0 if workers else idle + POLL_S
            if idle >= WORKERS_TIMEOUT_S:
                raise ClusterError(f"the cluster at {self.address} has had no worker for "
                                   f"{WORKERS_TIMEOUT_S:.0f} s")

    def _alone(self, pending: dict) -> list[FileResult]:
        """The one suspect in flight, alone on the cluster: a crash is then its own."""
        (future, (batch, _sent)), = pending.items()
        self._wait(pending)
        pending.clear()
        (_path, rel, kind), = batch
        try:
            return future.result()
        except WorkerNotReady as exc:
            raise ClusterError(str(exc)) from None
        except KilledWorker:
            return [FileResult(rel=rel, kind=kind, error=CRASHED)]
        except Exception as exc:
            return [FileResult(rel=rel, kind=kind,
                               error=f"{TASK_FAILED} ({one_line(exc, 160)})")]

    def close(self) -> None:
        """Disconnect; the cluster stays up (with the model files, for the next run)."""
        with contextlib.suppress(Exception):
            self.client.close()
