"""Budgets and decisions written into the store, so SQL sees caps and blocks (migration 0008)."""
