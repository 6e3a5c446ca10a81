"""The replay's one cache: bounded stores that forget the least recently used entry first, and
views whose structure follows a layer's latest weight mask."""

from __future__ import annotations

import numpy as np

from accelsim.engine.cache import ReplayCache
from accelsim.engine.masks import LayerMasks
from accelsim.store import Store


def test_a_store_forgets_the_least_recently_used_entry_and_makes_each_value_once() -> None:
    store = Store(limit=2)
    made: list[str] = []

    def make(key: str):
        return lambda: made.append(key) or key.upper()

    assert store.get("a", make("a")) == "A" and store.get("b", make("b")) == "B"
    assert store.get("a", make("a")) == "A"   # kept: made once, and now the most recent
    store.get("c", make("c"))                 # over the limit: "b" goes, not "a"
    assert made == ["a", "b", "c"] and len(store) == 2
    assert store.peek("b") is None and store.peek("a") == "A"
    store.put("d", "D")                       # "c" was the least recently used
    assert [key for key, _ in store.items()] == ["a", "d"]


def test_views_share_structure_while_the_weights_stay_and_drop_it_when_they_change() -> None:
    cache = ReplayCache()
    weight = np.ones((8, 8), dtype=bool)
    weight[::2, ::3] = False
    masks = LayerMasks(weight=weight)
    first = cache.views(masks, ("conv", 1), ("conv", 1, 0))
    calls = []
    assert first.structure("k", lambda: calls.append(1) or "plan") == "plan"
    again = cache.views(masks, ("conv", 1), ("conv", 1, 0))  # a later step, same weights
    assert again.structure("k", lambda: calls.append(1) or "new") == "plan" and calls == [1]
    assert again.per_job("gate", lambda: "g") == "g" and first.per_job("gate", lambda: 0) == 0
    newer = cache.views(masks, ("conv", 1), ("conv", 1, 5))  # weights stored again at step 5
    assert newer.structure("k", lambda: "fresh") == "fresh" and len(cache.structure) == 1
    alone = cache.views(masks, None)  # no slot: kept with this job only
    assert alone.structure("k", lambda: "own") == "own" and len(cache.structure) == 1
