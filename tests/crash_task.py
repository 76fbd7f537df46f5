"""A worker task for tests: analyses like the real one, but dies on a file named poison.

Stands in for what the OOM killer (SIGKILL) or a crashing decoder (SIGABRT) does to a
worker process: the process vanishes mid-batch, with no exception to catch. It lives in its own
module so worker processes can import it.
"""

from __future__ import annotations

import os
import signal

from facefinder.analyse import AnalysisJob, analyse_files
from facefinder.records import FileResult


def die_on_poison(batch: list, job: AnalysisJob) -> list[FileResult]:
    """Killed from outside on poison (SIGKILL: the OOM killer, a task manager)."""
    if any("poison" in rel for _path, rel, _kind in batch):
        os.kill(os.getpid(), signal.SIGKILL)
    return analyse_files(batch, job)


def abort_on_poison(batch: list, job: AnalysisJob) -> list[FileResult]:
    """Crashed by poison itself (SIGABRT: a decoder's failed check on a damaged file)."""
    if any("poison" in rel for _path, rel, _kind in batch):
        os.abort()
    return analyse_files(batch, job)


def fail_on_poison(batch: list, job: AnalysisJob) -> list[FileResult]:
    """Like a model failing (onnxruntime out of memory) on a batch with poison in it."""
    if any("poison" in rel for _path, rel, _kind in batch):
        raise RuntimeError("bad allocation")
    return analyse_files(batch, job)
