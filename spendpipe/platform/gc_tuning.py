"""How often Python's cyclic garbage collector runs, for a process that reads Kafka in bulk.

Python collects its youngest generation after every 700 net allocations of tracked objects,
and the whole heap once enough objects have survived into the oldest generation (a quarter of
it since the last time). A consumer reading 100,000 records a batch allocates a tracked object
per record and keeps each until its flush is written, so every batch is promoted through the
generations and sets off full collections: measured on 2026-12-02, 7 full collections per
million events held the GIL for 1.8-2.6 s in all (146 middle ones another 0.2-0.4 s), time in
which neither the event loop nor the writer's Python ran. Nothing in the aggregator's own data
is cyclic; the records die by reference counting when their batch is dropped.

Only the first threshold changes (the allocations between young collections); the older
generations keep Python's ratios, so cyclic garbage is still found, a few times less often.
"""

import gc


def collect_young_every(allocations: int) -> None:
    """Collect the youngest generation after `allocations` net allocations (0: leave Python's
    thresholds as they are). Process-wide."""
    if allocations > 0:
        gc.set_threshold(allocations, *gc.get_threshold()[1:])
