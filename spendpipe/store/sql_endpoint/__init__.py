"""The SQL endpoint: ClickHouse's HTTP interface, read-only, over the embedded store.

chDB opens its directory exclusively, so in embedded mode the process that owns the store
(`spendpipe run all` / `run aggregator`) serves the protocol a ClickHouse server speaks
(`server`, on `protocol`, `statements` and `engine`), and the CLI, the BudgetManager and
analysts' own tools (clickhouse-connect, curl, Grafana) query through it (`client`); with a
ClickHouse server they connect to it instead. `settings` holds where it listens, its limits and
where clients look for it: the defaults agree, so neither side needs configuring on one machine.
"""
