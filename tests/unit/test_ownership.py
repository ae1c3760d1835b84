"""Claims and the settle wait (`aggregator/ownership`), against a stand-in for the owners table:
a new owner waits only where an earlier owner may still have an insert in flight."""

from typing import Any

from spendpipe.aggregator.ownership import _PROCESS, OWNERS_TABLE, Fence, Ownership, fence_sql

SETTLE_S = 5.0


class _Store:
    """`partition_owners` as rows; answers the one query `Ownership` makes of it."""

    def __init__(self) -> None:
        self.claims: list[dict[str, Any]] = []

    def insert_columns(self, table: str, columns: list[list[Any]], names: list[str]) -> None:
        assert table == OWNERS_TABLE
        self.claims += [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    def rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Per partition asked, below the epoch asked: the latest claim's owner, and whether it
        was released."""
        latest: dict[int, tuple[int, bool, str]] = {}
        for row in self.claims:
            partition = row["kafka_partition"]
            if partition in parameters["partitions"] and row["epoch"] < parameters["epoch"]:
                mark = (row["epoch"], row["released"], row["owner"])
                latest[partition] = max(latest.get(partition, mark), mark)
        return [(partition, owner, released) for partition, (_, released, owner) in latest.items()]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _ownership(clock: _Clock, *, embedded: bool = False) -> Ownership:
    return Ownership(group="g", topic="t", settle_s=SETTLE_S, embedded=embedded, clock=clock)


def _claimed(owner: Ownership, store: _Store, partitions: list[int], generation: int) -> None:
    owner.assigned(partitions, generation)
    owner.claim(store)  # type: ignore[arg-type]


def test_the_first_owner_of_a_partition_writes_at_once_under_its_generation() -> None:
    store, clock = _Store(), _Clock()
    owner = _ownership(clock)
    owner.assigned([0, 1], generation=7)
    assert owner.fence is None
    assert owner.needs_claim
    owner.claim(store)  # type: ignore[arg-type]
    assert owner.fence == Fence("g", "t", 7)
    assert owner.settle_wait_s() == 0
    assert sorted((c["kafka_partition"], c["epoch"], c["released"]) for c in store.claims) == [
        (0, 7, False),
        (1, 7, False),
    ]


def test_an_owner_that_takes_over_from_one_that_did_not_release_waits_out_its_inserts() -> None:
    store, clock = _Store(), _Clock()
    gone, heir = _ownership(clock), _ownership(clock)
    _claimed(gone, store, [0, 1], generation=3)
    _claimed(heir, store, [0, 1], generation=5)  # the earlier owner was left out: no release
    assert heir.settle_wait_s() == SETTLE_S
    clock.now += SETTLE_S
    assert heir.settle_wait_s() == 0


def test_an_owner_that_released_after_its_last_flush_hands_over_without_a_wait() -> None:
    store, clock = _Store(), _Clock()
    first, second = _ownership(clock), _ownership(clock)
    _claimed(first, store, [0, 1], generation=3)
    release = first.revoked()
    assert release is not None
    first.release(store, release)  # type: ignore[arg-type]
    _claimed(second, store, [0, 1], generation=4)
    assert second.settle_wait_s() == 0
    assert second.fence == Fence("g", "t", 4)
    assert first.fence is None


def test_partitions_kept_into_the_next_generation_need_no_wait_and_new_ones_do() -> None:
    store, clock = _Store(), _Clock()
    other, owner = _ownership(clock), _ownership(clock)
    _claimed(other, store, [1], generation=2)
    _claimed(owner, store, [0], generation=2)
    owner.revoked()
    _claimed(owner, store, [0], generation=3)  # kept: no one else held it in between
    assert owner.settle_wait_s() == 0
    owner.revoked()
    _claimed(owner, store, [0, 1], generation=4)  # partition 1 comes from an owner that never released
    assert owner.settle_wait_s() == SETTLE_S


def test_after_a_missed_generation_every_partition_counts_as_acquired() -> None:
    store, clock = _Store(), _Clock()
    owner, interim = _ownership(clock), _ownership(clock)
    _claimed(owner, store, [0], generation=2)
    _claimed(interim, store, [0], generation=3)  # while the owner was left out of the group
    owner.revoked()
    _claimed(owner, store, [0], generation=4)
    assert owner.settle_wait_s() == SETTLE_S


def test_on_chdb_an_owner_of_another_process_has_ended_and_is_not_waited_for() -> None:
    store, clock = _Store(), _Clock()
    store.claims.append(
        {
            "consumer_group": "g",
            "topic": "t",
            "kafka_partition": 0,
            "epoch": 9,
            "owner": "host/0ld/1",
            "released": False,
        }
    )
    embedded = _ownership(clock, embedded=True)
    _claimed(embedded, store, [0], generation=10)
    assert embedded.settle_wait_s() == 0
    assert f"/{_PROCESS}/" in embedded.owner
    sibling = _ownership(clock, embedded=True)  # same process: its inserts may still run
    _claimed(sibling, store, [0], generation=11)
    assert sibling.settle_wait_s() == SETTLE_S


def test_a_failed_flush_waits_out_its_inserts_on_a_server_only_and_blocks_the_release() -> None:
    store, clock = _Store(), _Clock()
    server, embedded = _ownership(clock), _ownership(clock, embedded=True)
    for owner in (server, embedded):
        _claimed(owner, store, [0], generation=1)
        owner.failed()
    assert embedded.settle_wait_s() == 0
    assert server.settle_wait_s() == SETTLE_S
    assert server.revoked() is None  # the next owner waits, as after a crash
    assert embedded.revoked() is not None


def test_an_unfenced_write_has_no_condition_and_a_fence_names_its_partitions() -> None:
    assert fence_sql(None, [0]) == ("1", {})
    condition, parameters = fence_sql(Fence("g", "t", 4), [2, 0, 2])
    assert "max(epoch)" in condition
    assert parameters == {"owner_group": "g", "owner_topic": "t", "owner_epoch": 4, "owner_partitions": [0, 2]}
