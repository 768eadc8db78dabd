"""How often CPython's cyclic garbage collector looks at a serving process's whole heap.

Every Check that sees a new token leaves entries in the token, outcome and answer caches
(about 16 objects the collector tracks per token), and evicts old ones. With CPython's
default schedule, a full collection runs whenever a quarter of the heap is new since the
last one: under a flood of new tokens every few seconds, each walking every cached entry
while no Check is answered. Measured on the bench VM (2 cores): 130-260 ms per pause,
which put the p99 of new-token requests at 3x the always-OK floor's. Full collections find
almost nothing here (about 250 objects each: the caches free their entries by reference
counting, and so does a replaced configuration generation).

So `serve` freezes what start-up built (configuration, servers, modules) out of the
collector's sight, and runs a full collection only after 100x as many young collections as
the default. Young collections (where grpc's per-call cycles die) keep their schedule.
"""

from __future__ import annotations

import gc

# Young (generation 1) collections between two full ones; CPython's default is 10.
FULL_COLLECTION_EVERY = 1000


def settle_after_start() -> None:
    """Collect once, move everything alive now to the permanent generation, and space full
    collections out. Call once, when the service has started and before it takes load."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
