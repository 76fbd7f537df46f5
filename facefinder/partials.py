"""Hidden temporary files beside a copy or a report, and the clean-up of dead runs' ones.

Copies and reports are written to ``.NAME.partial-PID-RANDOM`` in the target folder and
renamed into place when complete. A run killed hard (``kill -9``, power cut) cannot
remove its temporary file, so the next run that writes into the same folder removes
those whose process is gone. Only names of exactly this pattern are ever touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
import time
from pathlib import Path

_PATTERN = re.compile(r"^\..+\.partial-(?:(\d{1,9})-)?[0-9a-f]{8}$", re.S)
NAME_BYTES = 180  # of the original name kept in the temporary one: far under 255 bytes
# Stale after a day whatever its pid says: names without a pid (earlier versions), and
# a pid now used by another process or from another PC (the stick moves between PCs).
OLD_SECONDS = 24 * 3600


def temp_name(name: str) -> str:
    """The hidden temporary name for ``name`` written by this process (its start, cut at
    ``NAME_BYTES`` bytes of UTF-8: a name of 60 emoji is 240 bytes)."""
    start = name.encode("utf-8", "surrogateescape")[:NAME_BYTES]
    start_text = start.decode("utf-8", "ignore") if len(start) < len(name.encode(
        "utf-8", "surrogateescape")) else name
    return f".{start_text}.partial-{os.getpid()}-{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on Windows: assumed, no cheap check)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return True  # the age rule cleans up there instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # exists, owned by someone else (or not a pid we can ask about)
    return True


def sweep(folder: Path) -> int:
    """Remove the temporary files of dead runs in ``folder``; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        found = _PATTERN.match(entry.name)
        if found is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = found.group(1)
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            # ctime too: a copy's temp file gets the photo's own (old) mtime before it is
            # renamed into place, and must not look stale to a second run meanwhile.
            old = now - max(info.st_mtime, info.st_ctime) > OLD_SECONDS
            if old or (pid is not None and not pid_alive(int(pid))):
                os.unlink(entry.path)
                removed += 1
    return removed
