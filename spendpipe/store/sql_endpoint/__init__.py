"""The SQL endpoint: read-only SQL over the embedded store, for processes that cannot open it.

chDB opens its directory exclusively, so in embedded mode the process that owns the store
(`spendpipe run all` / `run aggregator`) serves SQL on loopback (`server`), and the CLI, the
BudgetManager and analysts query through it (`client`); with a ClickHouse server the clients
connect directly instead. `settings` holds where it listens and where clients look for it:
the defaults agree, so neither side needs configuring on one machine.
"""
