"""Offline face finder: find the people of reference/ in a photo collection.

Data flows one way: files -> decode -> detect -> align -> embed -> store -> match ->
report/copy. ``from facefinder import Finder`` is the public API (``facefinder.api``);
it is imported lazily so that ``finder.py`` can set up the stick before anything heavy
(numpy, onnxruntime) is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_API = ("Finder", "FinderError", "RunResult", "Summary", "Notice", "Started", "FileDone",
        "AnalysisSettings", "Query")

if TYPE_CHECKING:
    from facefinder.analyse import AnalysisSettings
    from facefinder.api import FileDone, Finder, FinderError, Notice, RunResult, Started, Summary
    from facefinder.query import Query


def __getattr__(name: str) -> Any:
    if name == "AnalysisSettings":
        from facefinder.analyse import AnalysisSettings

        return AnalysisSettings
    if name == "Query":
        from facefinder.query import Query

        return Query
    if name in _API:
        from facefinder import api

        return getattr(api, name)
    raise AttributeError(f"module 'facefinder' has no attribute {name!r}")


__all__ = [
    "AnalysisSettings", "FileDone", "Finder", "FinderError", "Notice", "Query", "RunResult",
    "Started", "Summary", "__version__",
]
