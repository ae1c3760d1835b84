"""The LiteLLM gateway plugin: turns every call into a `SpendEvent` on Kafka without blocking it."""
