"""The one cache type: bounded in entries and in what its entries cost (characters, say).

Every cache whose keys or values a client can influence is one of these, so each has both
bounds and evicts the same way: the least recently used entry first, or, for caches whose
hits must cost nothing more than a lookup, the oldest entry first (`refresh_on_hit=False`).
An entry that alone costs more than `max_entry_cost` is not kept at all: the caller works
it out again next time, which is what a client sending ever-new huge values deserves.

Not thread-safe: each cache is used by one thread (the event loop) or behind its owner's
lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(
        self,
        max_entries: int,
        max_entry_cost: int | None = None,
        refresh_on_hit: bool = True,
    ) -> None:
        self.max_entries = max_entries
        self.max_entry_cost = max_entry_cost
        self._refresh_on_hit = refresh_on_hit
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None and self._refresh_on_hit:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, cost: int = 0) -> bool:
        """Keep `value` under `key`, evicting as needed; False (nothing kept) when the entry
        alone costs more than max_entry_cost."""
        if self.max_entry_cost is not None and cost > self.max_entry_cost:
            return False
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def pop(self, key: K) -> V | None:
        return self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
