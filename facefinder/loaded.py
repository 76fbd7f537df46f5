"""Models loaded in this process, a few at most, the least recently used dropped first.

Loading a model costs about a second, so each process (a worker, or a Finder in the main
process) keeps what it loaded, keyed explicitly by everything the loaded object depends
on (spec, models folder, threads): a second Finder with another model gets its own entry
instead of evicting the first one's on every call. The face pipeline and the object
detector are both kept this way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Loaded(Generic[K, V]):
    """``get(key)`` loads with ``load(key)`` once, then answers from memory."""

    def __init__(self, load: Callable[[K], V], size: int) -> None:
        self.load = load
        self.size = size
        self._loaded: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V:
        """The object for ``key``, loaded on first use; the oldest unused one goes."""
        if key in self._loaded:
            self._loaded.move_to_end(key)
        else:
            self._loaded[key] = self.load(key)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return self._loaded[key]
