"""The embedded engine runs its background merges at the lowest CPU priority (`merge_nice`), so
that they do not slow the flushes and judgements an enforcement decision waits for."""

import os
from pathlib import Path

import pytest

from spendpipe.platform.clickhouse import ClickhouseStore
from tests.support.waiting import eventually_sync

CAP_SYS_NICE = 23
"""The capability's bit in /proc's `CapEff` mask: ClickHouse changes a thread's nice value only
with it."""


def has_sys_nice() -> bool:
    status = Path("/proc/self/status").read_text()
    (effective,) = [line.split()[1] for line in status.splitlines() if line.startswith("CapEff:")]
    return bool(int(effective, 16) >> CAP_SYS_NICE & 1)


def merge_thread_nice_values() -> set[int]:
    """The nice values of this process's merge threads now (a thread is niced only while it merges)."""
    values = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("MergeMutate"):
            values.add(int(stat[stat.rindex(")") + 2 :].split()[16]))
    return values


def test_the_embedded_engine_starts_with_its_merges_at_the_lowest_priority(clickhouse: ClickhouseStore) -> None:
    setting = "SELECT value FROM system.server_settings WHERE name = 'os_threads_nice_value_merge_mutate'"

    assert clickhouse.column(setting) == ["19"]


@pytest.mark.skipif(not has_sys_nice(), reason="ClickHouse sets a merge's nice value only with CAP_SYS_NICE")
def test_a_merge_runs_at_the_lowest_priority(clickhouse: ClickhouseStore) -> None:
    clickhouse.command("CREATE TABLE merged (n UInt64) ENGINE = MergeTree ORDER BY n")
    parts = iter(range(1_000))

    def insert_a_part_and_look() -> set[int]:
        """Each look adds a part, so that merges keep coming while the test looks for one."""
        start = next(parts) * 1_000_000
        clickhouse.command(f"INSERT INTO merged SELECT number FROM numbers({start}, 1_000_000)")
        return merge_thread_nice_values()

    eventually_sync(insert_a_part_and_look, lambda values: 19 in values, within=60, what="a merge thread at nice 19")
