"""spendpipe: cost events from LLM gateways to exact windowed totals, budgets and blocks."""
