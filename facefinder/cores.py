"""How many cores this process may use: the worker count, the threads a worker's models
and the decision's distance blocks run on, all sized from one answer."""

from __future__ import annotations

import os


def available_cores() -> int:
    """All cores this process may use (respects CPU affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Windows, macOS
        return max(1, os.cpu_count() or 1)
