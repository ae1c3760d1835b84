"""Benchmarks against the goals in DESIGN.md ("Performance goals"); `make bench` runs them."""
