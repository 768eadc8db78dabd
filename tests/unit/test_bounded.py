"""The one cache type: bounded in entries and in what one entry may cost."""

from __future__ import annotations

from extauthz.bounded import BoundedCache


def test_least_recently_used_goes_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)


def test_without_refresh_on_hit_the_oldest_goes_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2, refresh_on_hit=False)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert ("a" in cache, "b" in cache, "c" in cache) == (False, True, True)


def test_an_entry_costing_more_than_the_bound_is_not_kept() -> None:
    cache: BoundedCache[str, str] = BoundedCache(10, max_entry_cost=8)
    assert cache.put("small", "x" * 8, cost=8)
    assert not cache.put("big", "x" * 9, cost=9)
    assert "big" not in cache and len(cache) == 1


def test_putting_again_replaces_and_refreshes() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), "b" in cache, cache.get("c")) == (10, False, 3)
    assert cache.pop("a") == 10 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0
