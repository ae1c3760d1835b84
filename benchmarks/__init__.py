"""Benchmarks against the goals in docs/architecture.md ("Performance goals"); `make bench` runs them."""
