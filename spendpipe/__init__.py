"""spendpipe: cost events from LLM gateways to exact windowed totals, budgets and blocks."""

from spendpipe import legacy_paths

legacy_paths.install()
