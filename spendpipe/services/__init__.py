"""One package per deployable: gateway (LiteLLM plugin), aggregator, admin (CLI)."""
