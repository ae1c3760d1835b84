"""Recording and delivery: every call LiteLLM logs becomes a `SpendEvent` (`event_builder.py`),
handed to the `EventPublisher` (`publisher.py`), which sends it to Kafka from its own thread so a
request never waits on Kafka. What Kafka cannot take goes to a bounded disk spool (`spool.py`) and
is replayed, oldest first, when Kafka answers again, also after a restart; the aggregator drops
the duplicates a replay can make by event id. The subprocess publisher (`publisher_process.py`)
runs the same publisher in a child process (`publisher_child.py`), fed over a pipe (`wire.py`).
"""
