"""Executors: the same analysis in this process or in worker processes."""

from __future__ import annotations

import functools
import itertools
import signal
from pathlib import Path

import numpy as np
import pytest

from facefinder.analyse import AnalysisJob, ModelCache, analyse_files
from facefinder.executors import (
    InlineExecutor,
    ProcessExecutor,
    analyse_all,
    batches,
    resolve_jobs,
)
from facefinder.vision.registry import model_spec


def _items(celebrities: Path) -> list:
    photos = sorted((celebrities / "val").rglob("*.jpg"))[:10]
    return [(p, p.name, "image") for p in photos]


def test_inline_and_process_executors_agree(celebrities: Path, models_dir: Path) -> None:
    """Where the analysis runs changes nothing in what it finds."""
    job = AnalysisJob(model_spec("Facenet"), models_dir)
    items = _items(celebrities)
    inline = {r.rel: r for r in analyse_all(items, job, InlineExecutor(ModelCache()))}
    workers = {r.rel: r for r in analyse_all(items, job, ProcessExecutor(2))}
    assert set(inline) == set(workers) == {rel for _, rel, _ in items}
    for rel, result in inline.items():
        other = workers[rel]
        assert [f.box for f in result.faces] == [f.box for f in other.faces]
        for a, b in zip(result.faces, other.faces, strict=True):
            if a.embedding is not None:
                assert np.allclose(a.embedding, b.embedding, atol=1e-5)


def test_two_models_in_one_process_keep_their_own_cache(celebrities: Path,
                                                       models_dir: Path) -> None:
    """A second Finder (other threads or model) does not evict the first one's models."""
    cache = ModelCache()
    one = AnalysisJob(model_spec("Facenet"), models_dir, threads=1)
    two = AnalysisJob(model_spec("Facenet"), models_dir, threads=2)
    first = cache.get(one)
    cache.get(two)
    assert cache.get(one) is first
    item = _items(celebrities)[:1]
    assert analyse_files(item, one, cache)[0].faces


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="signal masks are POSIX")
def test_workers_start_with_ctrl_c_held_back() -> None:
    """Workers are started with Ctrl-C blocked (the main process handles it and ends
    them: one pressed while a worker was starting made it print a traceback); a Ctrl-C
    that comes while workers are started is held, not lost: the main process gets it as
    KeyboardInterrupt once they are, and its own mask is as before."""
    from facefinder.executors import _ctrl_c_held, _start_pool, _stop_pool

    pool = _start_pool(1)
    try:
        held = pool.submit(functools.partial(signal.pthread_sigmask, signal.SIG_BLOCK,
                                             set())).result(timeout=60)
    finally:
        _stop_pool(pool)
    assert signal.SIGINT in held
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    went_on = []
    # Python's own handler, as in a terminal: a test run started in the background
    # (nohup, ``cmd &``, some CI runners) has Ctrl-C ignored, and nothing to hold
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), _ctrl_c_held():
            signal.raise_signal(signal.SIGINT)  # a Ctrl-C while workers start
            went_on.append(True)  # not interrupted in the middle
        assert went_on == [True]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_jobs_are_decided_in_one_place() -> None:
    """--jobs: what was asked for, else one per core; nonsense is refused."""
    assert resolve_jobs(3) == 3
    assert resolve_jobs(None) >= 1
    with pytest.raises(ValueError):
        resolve_jobs(0)


def test_batches_are_lazy_and_complete() -> None:
    """A 500,000-file drive is never held as one list (an endless one works too)."""
    assert next(batches(itertools.count(), 8)) == list(range(8))
    assert [len(b) for b in batches(iter(range(19)), 8)] == [8, 8, 3]


def test_a_round_of_known_files_ends_on_every_worker_together() -> None:
    """A list (one round of files) shared by workers: whole batches while there is
    plenty, then smaller ones, never more than a share of what is left per batch in
    flight, so no worker reads a whole batch alone at the end; one worker, or files
    whose end is not known: whole batches."""
    items = list(range(60))
    sizes = [len(b) for b in batches(items, 8, workers=2)]
    assert [x for b in batches(items, 8, workers=2) for x in b] == items
    assert sizes[:4] == [8, 8, 8, 8] and sizes[-4:] == [1, 1, 1, 1]
    assert sizes == sorted(sizes, reverse=True)
    left = len(items)
    for size in sizes:  # each at most its share of what is left among 4 in flight
        assert size <= max(1, -(-left // 4))
        left -= size
    assert [len(b) for b in batches(items, 8)] == [8] * 7 + [4]
    assert [len(b) for b in batches(iter(items), 8, workers=2)] == [8] * 7 + [4]
    assert list(batches([], 8, workers=2)) == []


def test_the_executor_s_workers_shape_the_end_of_a_round() -> None:
    """``analyse_all`` asks the executor how many workers share a round when the round
    starts (a cluster counts them in ``run``), and a known list's batches shrink for
    them at its end."""
    class Recording:
        jobs = 1

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def run(self, batches, job):
            self.jobs = 4  # as a cluster executor does when its run starts
            for batch in batches:
                self.sizes.append(len(batch))
                yield []

    executor = Recording()
    items = [(Path(f"{i}.jpg"), f"{i}.jpg", "image") for i in range(40)]
    assert list(analyse_all(items, AnalysisJob.__new__(AnalysisJob), executor)) == []
    assert sum(executor.sizes) == 40 and executor.sizes[:2] == [5, 5]
    assert executor.sizes[-1] == 1


class CountingExecutor(InlineExecutor):
    """A stand-in for a cluster: many 'workers', counts what it is given to analyse."""

    jobs = 100

    def __init__(self) -> None:
        super().__init__(ModelCache())
        self.files = 0

    def run(self, batches, job):  # type: ignore[override]
        for batch in batches:
            self.files += len(batch)
            yield analyse_files(batch, job, self.models)


def test_a_custom_executor_gets_the_work_with_or_without_an_index(
        celeb_album: Path, models_dir: Path, tmp_path: Path) -> None:
    """The seam a cluster executor plugs into: every file to analyse reaches it."""
    from facefinder import Finder

    for index in (None, tmp_path / "i.sqlite"):
        executor = CountingExecutor()
        finder = Finder(celeb_album / "reference", models=models_dir, index=index,
                        executor=executor)
        result = finder.find(celeb_album / "collection")
        assert executor.files >= 25 and result.summary.files_decoded == 25
