"""The enforcer: budgets against exact window totals, block/unblock decisions on Kafka."""
