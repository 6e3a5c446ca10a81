"""A bounded store of kept values, least recently used out first: the one such mechanism the
trace reader and the replay's cache (:mod:`accelsim.engine.cache`) use."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_MISSING = object()


class Store:
    """A bounded mapping from keys to kept values, least recently used out first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept for ``key``, made by ``make()`` (and kept) the first time."""
        items = self._items
        value = items.get(key, _MISSING)
        if value is not _MISSING:
            items.move_to_end(key)
            return value
        value = items[key] = make()
        if len(items) > self.limit:
            items.popitem(last=False)
        return value

    def peek(self, key: Hashable) -> Any:
        """The value kept for ``key``, or None (without making it)."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` for ``key`` (replacing what was there)."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[Hashable, Any]]:
        """The kept (key, value) pairs, least recently used first."""
        return list(self._items.items())
