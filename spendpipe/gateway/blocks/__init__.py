"""The block list: the enforcer's latest decision per scope (and per scope and model), read from
the compacted `spend.decisions` topic by `DecisionFollower` and held in memory by `BlockList`,
so refusing a blocked request costs a handful of dict lookups and no I/O. A block lifts by itself
at its `expires_at`; until the topic was read to its end, the plugin fails open or closed as
configured.
"""
