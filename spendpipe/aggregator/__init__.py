"""The aggregator: spend events from Kafka to exact windowed totals in ClickHouse, exactly once."""
