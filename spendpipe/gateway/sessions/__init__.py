"""Agent session caps (`max_iterations`, `max_budget_per_session`), enforced in proxy mode.
`SessionCaps` (`caps.py`) holds each agent's caps as read from `spend.budgets`; `SessionGate`
(`gate.py`) reserves a capped call's place on `spend.sessions` through `SessionLog`
(`session_log.py`), and the call is served only once `SessionLedger` (`ledger.py`), which every
gateway replays in the same order, grants it. Calls of uncapped agents cost one dict lookup.
"""
