"""Benchmarks that hold a chDB store run in a process of their own: chDB opens one engine
directory per process, and `make bench` runs several. The parent runs the benchmark's module and
reads the rows it prints as JSON on its last line; the child measures on a throwaway store."""

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.store.migrate import migrate

Rows = list[dict[str, Any]]


def rows_of(module: str, *arguments: str) -> Rows:
    """Run `python -m module arguments...` and return the rows it printed."""
    result = subprocess.run([sys.executable, "-m", module, *arguments], check=True, capture_output=True, text=True)
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def print_rows_on_a_store(database: str, measure: Callable[[ClickhouseStore], Rows]) -> None:
    """The child's side: `measure` on a migrated store in a throwaway directory (under the
    directory given as the first argument, if any); print its rows."""
    parent = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"spendpipe-{database}-", dir=parent) as d:
        clickhouse = connect_clickhouse(ClickhouseSettings(dsn=f"chdb://{d}", database=database))
        try:
            migrate(clickhouse)
            print(json.dumps(measure(clickhouse)))
        finally:
            clickhouse.close()
