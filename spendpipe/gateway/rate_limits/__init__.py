"""Rate limits as this replica counts them: `RateGate` (`gate.py`) holds every scope's limits,
which `LimitFollower` keeps current from `spend.budgets`, and admits or refuses each request by
a true sliding minute of requests and tokens (`sliding_window.py`) and the requests in flight
(`in_flight.py`). `leases.py` lets the hooks that see a call end find what its admission counted.
Across replicas the enforcer's rate-limit blocks (in the block list) bound the sum.
"""
