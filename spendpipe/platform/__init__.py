"""Builders that turn settings into clients (ClickHouse, Kafka) and hand back their cleanup."""
