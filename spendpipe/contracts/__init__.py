"""The contracts every service shares: messages, topics, windows, scopes and the ClickHouse schema.

Nothing here imports service code.
"""
