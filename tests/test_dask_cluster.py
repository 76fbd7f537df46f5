"""--cluster: the analysis on a real Dask cluster gives exactly what a local run gives.

The cluster is real: a scheduler and two worker processes (``LocalCluster`` with
``processes=True``, each worker under a nanny that restarts it when it dies), real
models shipped to the workers by the executor's plugin, real photos. Every run goes
through the command line, and the CSVs are compared byte for byte with a local run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import pytest
from conftest import copy_references

from facefinder.analyse import AnalysisJob, ModelCache
from facefinder.cli import main
from facefinder.dask_executor import ClusterExecutor, parse_root_map, where_workers_read
from facefinder.executors import CRASHED, InlineExecutor, analyse_all
from facefinder.vision.registry import model_spec

PEOPLE = ["ben_afflek", "elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory, celebrities: Path) -> Path:
    """reference/ (4 photos a person) and collection/ (the 25 val photos, nested, plus a
    damaged JPEG and a text file), small enough for several runs in a minute."""
    root = tmp_path_factory.mktemp("cluster_album")
    copy_references(celebrities, root, PEOPLE, 4)
    for n, photo in enumerate(sorted((celebrities / "val").rglob("*.jpg"))):
        target = root / "collection" / ["2019", "Party/sub", "misc"][n % 3] / f"IMG_{n:03d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, target)
    (root / "collection" / "misc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    (root / "collection" / "notes.txt").write_text("not a photo\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """A scheduler and two single-threaded worker processes. A task is given up after
    two worker deaths (``allowed-failures`` 1; Dask's default is 3) so that the test of a
    file that kills every worker needs four restarts, not eight."""
    import dask

    with (dask.config.set({"distributed.scheduler.allowed-failures": 1}),
          distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None) as local):
        yield local


def _run(album: Path, out: Path, *options: str) -> tuple[int, bytes, dict]:
    """finder.py over the album; (exit status, CSV bytes, JSON report)."""
    out.mkdir(parents=True, exist_ok=True)
    status = main([str(album / "collection"), "--reference", str(album / "reference"),
                   "--csv", str(out / "found.csv"), "--json", str(out / "run.json"),
                   "--no-progress", *options])
    report = json.loads((out / "run.json").read_text(encoding="utf-8"))
    return status, (out / "found.csv").read_bytes(), report


@pytest.fixture(scope="module")
def local(album: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[bytes, dict]:
    """The local run every cluster run must equal (two worker processes here)."""
    status, csv, report = _run(album, tmp_path_factory.mktemp("local"), "--jobs", "2",
                               "--no-index", "--models", str(models_dir))
    assert status == 0 and csv.count(b"\n") > 20  # the album's people are found
    return csv, report


def _unreadable(report: dict) -> list[tuple[str, str]]:
    return sorted((entry["path"], entry["reason"]) for entry in report["unreadable"])


def test_cluster_run_gives_the_local_csv_and_fills_the_index(
        album: Path, models_dir: Path, cluster, local, tmp_path: Path) -> None:
    """Same CSV and unreadable list as a local run; the index it fills answers a local
    re-run completely (the main process wrote it, exactly as it would have)."""
    index = str(tmp_path / "index.sqlite")
    status, csv, report = _run(album, tmp_path / "cluster", "--cluster",
                               cluster.scheduler_address, "--index", index,
                               "--models", str(models_dir))
    assert status == 0
    assert csv == local[0]
    assert _unreadable(report) == _unreadable(local[1])
    assert report["summary"]["files_decoded"] == local[1]["summary"]["files_decoded"]
    status, again, warm = _run(album, tmp_path / "warm", "--jobs", "1", "--index", index,
                               "--models", str(models_dir))
    assert status == 0 and again == csv and warm["summary"]["files_decoded"] == 0


def test_a_worker_killed_mid_run_loses_nothing(
        album: Path, models_dir: Path, cluster, local, tmp_path: Path) -> None:
    """SIGKILL one worker process while it holds a batch: Dask redoes the batch on a
    worker that lives (the nanny restarts the dead one, which gets the models again)."""
    watcher = distributed.Client(cluster.scheduler_address, set_as_default=False)
    killed: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def kill_one_busy_worker() -> None:
        pids = watcher.run(os.getpid)
        seen: set[str] = set()
        while not stop.is_set():
            busy = {worker: [str(key) for key in keys if "facefinder-batch" in str(key)]
                    for worker, keys in watcher.processing().items()}
            busy = {worker: keys for worker, keys in busy.items() if keys}
            seen.update(key for keys in busy.values() for key in keys)
            # the references' 3 batches are done: the collection's are being read
            if busy and len(seen) > 3:
                worker, keys = next(iter(busy.items()))
                os.kill(pids[worker], signal.SIGKILL)
                killed.append((worker, keys))
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_one_busy_worker, daemon=True)
    thread.start()
    try:
        status, csv, report = _run(album, tmp_path / "cluster", "--cluster",
                                   cluster.scheduler_address, "--no-index",
                                   "--models", str(models_dir))
    finally:
        stop.set()
        thread.join(timeout=10)
        watcher.close()
    assert killed, "no worker was killed while holding a batch"
    assert status == 0
    assert csv == local[0]
    assert _unreadable(report) == _unreadable(local[1])


def test_send_files_needs_nothing_shared(
        album: Path, models_dir: Path, cluster, local, tmp_path: Path) -> None:
    """--send-files: the workers read no path at all (here: every root mapped to a
    folder that does not exist), yet the CSV is the local run's - capture times too,
    since a sent file keeps its modification time."""
    status, csv, report = _run(album, tmp_path / "sent", "--cluster",
                               cluster.scheduler_address, "--send-files",
                               "--cluster-root-map", f"{album}=/nonexistent/album",
                               "--no-index", "--models", str(models_dir))
    assert status == 0
    assert csv == local[0]
    assert _unreadable(report) == _unreadable(local[1])


def test_root_map_points_the_workers_elsewhere(
        album: Path, models_dir: Path, cluster, local, tmp_path: Path) -> None:
    """--cluster-root-map LOCAL=REMOTE: workers read below REMOTE (here a second name
    for the album); a root mapped where nothing is gives unreadable files, not matches
    from elsewhere, and none of them is kept in the index as a property of the file."""
    mount = tmp_path / "mnt" / "album"
    mount.parent.mkdir()
    mount.symlink_to(album, target_is_directory=True)
    status, csv, _ = _run(album, tmp_path / "mapped", "--cluster", cluster.scheduler_address,
                          "--cluster-root-map", f"{album}={mount}", "--no-index",
                          "--models", str(models_dir))
    assert status == 0 and csv == local[0]

    status, csv, report = _run(
        album, tmp_path / "nowhere", "--cluster", cluster.scheduler_address,
        "--cluster-root-map", f"{album / 'reference'}={album / 'reference'}",
        "--cluster-root-map", f"{album / 'collection'}=/nonexistent/photos",
        "--no-index", "--models", str(models_dir))
    assert report["matches"] == []
    photos = [(rel, why) for rel, why in _unreadable(report) if "IMG_" in rel]
    assert len(photos) == 25 and all(why.startswith("cannot read file") for _, why in photos)


def test_root_map_is_checked_and_workers_get_no_path_outside_a_root(tmp_path: Path) -> None:
    """LOCAL=REMOTE parsing, longest root first; a file outside every mapped root is not
    sent (None), and the path a worker is given is its root plus a plain relative path."""
    with pytest.raises(ValueError):
        parse_root_map(["/photos"])
    mapped = parse_root_map([f"{tmp_path}=/mnt/a", f"{tmp_path / 'deep'}=/mnt/b"])
    assert [remote for _, remote in mapped] == ["/mnt/b", "/mnt/a"]
    inside = where_workers_read((tmp_path / "deep" / "x" / "p.jpg", "x/p.jpg", "image"), mapped)
    assert inside is not None and (inside.root, inside.relpath) == ("/mnt/b", "x/p.jpg")
    assert where_workers_read((Path("/elsewhere/p.jpg"), "p.jpg", "image"), mapped) is None
    same = where_workers_read((tmp_path / "a" / "p.jpg", "a/p.jpg", "image"), [])
    assert same is not None and (same.root, same.relpath) == (str(tmp_path), "a/p.jpg")


def test_a_file_that_kills_every_worker_is_one_unreadable_line(
        celebrities: Path, models_dir: Path, cluster, tmp_path: Path) -> None:
    """A photo whose reading kills the worker process (the OOM killer, a crashing
    decoder) kills every worker it is given to; Dask gives its batch up, the executor
    reads that batch's files alone, and the file ends as one crash entry - the others
    of its batch are read as usual."""
    from crash_task import die_on_poison

    photos = sorted((celebrities / "val").rglob("*.jpg"))[:9]
    shutil.copy(photos[0], tmp_path / "poison.jpg")
    items = [(p, p.name, "image") for p in photos]
    items.insert(3, (tmp_path / "poison.jpg", "poison.jpg", "image"))
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    executor = ClusterExecutor(cluster.scheduler_address, task=die_on_poison)
    try:
        results = {r.rel: r for r in analyse_all(items, job, executor)}
    finally:
        executor.close()
    assert results["poison.jpg"].error == CRASHED
    here = {r.rel: r for r in analyse_all(items[:3] + items[4:], job,
                                          InlineExecutor(ModelCache()))}
    for rel, result in here.items():
        assert results[rel].error is None
        assert [f.box for f in results[rel].faces] == [f.box for f in result.faces]


def test_cancel_stops_the_cluster_work_and_keeps_what_arrived(
        album: Path, models_dir: Path, cluster, tmp_path: Path) -> None:
    """A cancelled run returns what it had; its batches still queued on the cluster are
    cancelled, not left to run for nobody; the index keeps the files that arrived."""
    from facefinder import Finder
    from facefinder.api import FileDone

    stop = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, FileDone) and event.result.kind == "image":
            stop.set()

    executor = ClusterExecutor(cluster.scheduler_address)
    index = tmp_path / "index.sqlite"
    try:
        finder = Finder(album / "reference", models=models_dir, index=index,
                        executor=executor)
        result = finder.find(album / "collection", on_event=on_event, cancel=stop)
        left = [key for keys in executor.client.processing().values() for key in keys
                if "facefinder-batch" in str(key)]
        deadline = time.monotonic() + 10
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [key for keys in executor.client.processing().values() for key in keys
                    if "facefinder-batch" in str(key)]
    finally:
        executor.close()
    assert result.summary.interrupted and result.summary.files_scanned < 27
    assert left == []
    with Finder(album / "reference", models=models_dir, index=index, jobs=1) as again:
        rerun = again.find(album / "collection")
    assert rerun.summary.from_index >= result.summary.files_decoded >= 1


def test_workers_running_other_code_or_models_are_refused(
        album: Path, models_dir: Path, cluster, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose finder differs from this one's is refused (it would mix other
    embeddings into the index), and so is a model file that does not match its sha256."""
    import facefinder.dask_executor as dask_executor
    from facefinder.executors import ClusterError

    items = [(p, p.name, "image") for p in sorted((album / "reference").rglob("*.jpg"))[:2]]
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    executor = ClusterExecutor(cluster.scheduler_address)
    try:
        other = {**dask_executor.SOURCES, "analyse.py": "0" * 64}
        monkeypatch.setattr(dask_executor, "SOURCES", other)
        with pytest.raises(ClusterError, match=r"another version of the finder \(analyse.py"):
            list(analyse_all(items, job, executor))
        monkeypatch.undo()
        damaged = tmp_path / "models"
        shutil.copytree(models_dir, damaged, ignore=shutil.ignore_patterns("demo-album"))
        with (damaged / "facenet128-int8.onnx").open("r+b") as handle:
            handle.seek(1000)
            handle.write(b"\0\1\2\3")
        with pytest.raises(ClusterError, match="does not match its manifest sha256"):
            list(analyse_all(items, AnalysisJob(model_spec("Facenet"), damaged), executor))
    finally:
        executor.close()


def test_cluster_options_are_checked_before_anything_is_read(album: Path, capsys) -> None:
    """The root map and --send-files need --cluster; --jobs does not go with it; a
    mapping must say LOCAL=REMOTE. Each is one line and exit status 2."""
    base = [str(album / "collection"), "--reference", str(album / "reference"), "--no-index"]
    for extra, words in ((["--send-files"], "give --cluster ADDRESS too"),
                         (["--cluster", "tcp://127.0.0.1:1", "--jobs", "2"], "drop --jobs"),
                         (["--cluster", "tcp://127.0.0.1:1", "--cluster-root-map", "/x"],
                          "give LOCAL=REMOTE")):
        assert main([*base, *extra]) == 2
        assert words in capsys.readouterr().err


def test_a_hostile_name_never_leads_a_worker_out_of_its_folders(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Review fix: a file name with backslashes (plain characters on Linux) was a path on
    a Windows worker: read outside the mapped root, or written outside its scratch."""
    from pathlib import PureWindowsPath

    from facefinder import dask_executor
    from facefinder.dask_executor import Remote, Sent, WorkerNotReady, _open

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    written = _open(Sent("..\\..\\evil.jpg", b"x", 0, "a.jpg", "image"), scratch)
    assert written.parent == scratch and written.read_bytes() == b"x"
    assert "\\" not in written.name  # nothing a Windows worker would split on
    monkeypatch.setattr(dask_executor, "_NATIVE", PureWindowsPath)  # a Windows worker
    for relpath in ("a\\..\\..\\secret.jpg", "C:secret.jpg", "a/C:\\x.jpg"):
        with pytest.raises(WorkerNotReady):
            _open(Remote("/mnt/photos", relpath, "p.jpg", "image"), scratch)
    assert _open(Remote("/mnt/photos", "a/b.jpg", "a/b.jpg", "image"), scratch) == \
        Path("/mnt/photos/a/b.jpg")


def test_a_module_loaded_after_the_first_check_is_checked_too(monkeypatch) -> None:
    """Review fix: the answer was cached per main process's sources at the first check,
    when a worker had not yet imported its model modules (vision/facenet.py, the object
    detector), so a worker whose embedder differed was accepted for the whole run."""
    import sys

    from facefinder import dask_executor

    late = "facefinder.vision.objects"
    monkeypatch.delitem(sys.modules, late, raising=False)
    main = dict(dask_executor.SOURCES)
    main["vision/objects.py"] = "0" * 64  # the main process runs another object detector
    assert dask_executor.code_differences(main) is None  # not loaded here yet: no matter
    import facefinder.vision.objects  # noqa: F401 - the first batch loads it

    assert dask_executor.code_differences(main) == "vision/objects.py"
