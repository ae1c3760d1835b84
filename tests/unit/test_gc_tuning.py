import gc
from collections.abc import Iterator

import pytest

from spendpipe.platform.gc_tuning import collect_young_every


@pytest.fixture(autouse=True)
def python_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield saved
    gc.set_threshold(*saved)


def test_only_the_young_threshold_changes() -> None:
    collect_young_every(100_000)

    assert gc.get_threshold() == (100_000, 10, 10)


def test_zero_leaves_pythons_thresholds() -> None:
    collect_young_every(0)

    assert gc.get_threshold() == (700, 10, 10)
