"""The LiteLLM gateway plugin: turns every call into a `SpendEvent` on Kafka without blocking it,
and refuses the calls the pipeline's budgets, rate limits and agent session caps say to refuse.

`plugin.py` is the LiteLLM `CustomLogger` and `proxy.py` the proxy's entry point; they put the
wings together: `recording/` (the event, and its delivery to Kafka through a disk spool),
`blocks/` (the enforcer's decisions), `rate_limits/` (this replica's own count, and the limits it
follows), `sessions/` (agent session caps). `identity.py` reads who a request is and which scopes
apply to it; `refusals.py` says how each refusal reads.
"""
