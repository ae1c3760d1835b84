"""The session ledger every gateway replays: verdicts from records alone, in log order."""

from decimal import Decimal

from spendpipe.contracts.sessions import SessionRecord
from spendpipe.gateway.sessions.ledger import SessionLedger

AGENT, SESSION = "planner", "s-1"


def reserve(
    call: str, *, iterations: int | None = None, budget: str | None = None, session: str = SESSION
) -> SessionRecord:
    return SessionRecord(
        kind="reserve",
        agent_id=AGENT,
        session_id=session,
        call_id=call,
        max_iterations=iterations,
        max_budget_per_session=Decimal(budget) if budget else None,
    )


def end(kind: str, call: str, cost: str | None = None, session: str = SESSION) -> SessionRecord:
    return SessionRecord.model_validate(
        {"kind": kind, "agent_id": AGENT, "session_id": session, "call_id": call, "cost": cost}
    )


def test_max_iterations_grants_exactly_n_in_log_order() -> None:
    ledger = SessionLedger(idle_s=60, lease_s=600)
    verdicts = [v for n in range(5) for v in ledger.apply(reserve(f"c{n}", iterations=3), at=100 + n)]
    assert [v.granted for v in verdicts] == [True, True, True, False, False]
    assert verdicts[3].message == (
        "Max iterations exceeded for session s-1 of agent:planner. Current count: 3, max_iterations: 3."
    )
    assert verdicts[3].cap_kind == "max_iterations"


def test_a_failed_call_counts_and_a_withdrawn_one_does_not() -> None:
    ledger = SessionLedger(idle_s=60, lease_s=600)
    ledger.apply(reserve("a", iterations=2), at=1)
    ledger.apply(end("release", "a"), at=2)
    ledger.apply(reserve("b", iterations=2), at=3)
    ledger.apply(end("withdraw", "b"), at=4)
    assert [v.granted for v in ledger.apply(reserve("c", iterations=2), at=5)] == [True]
    assert [v.granted for v in ledger.apply(reserve("d", iterations=2), at=6)] == [False]


def test_concurrent_first_calls_wait_for_the_first_cost_then_stop_at_the_cap() -> None:
    ledger = SessionLedger(idle_s=60, lease_s=600)
    # given a cap of 1.00 and five calls of 0.30 reserved at once
    first = [v for n in range(5) for v in ledger.apply(reserve(f"c{n}", budget="1.00"), at=10)]
    # then only the first is granted: the others wait for a known cost
    assert [(v.call_id, v.granted) for v in first] == [("c0", True)]
    # when it settles, calls are granted while spend + calls in flight x 0.30 stays under 1.00
    after = ledger.apply(end("settle", "c0", "0.30"), at=11)
    assert [(v.call_id, v.granted) for v in after] == [("c1", True), ("c2", True), ("c3", True)]
    after = [v for call in ("c1", "c2") for v in ledger.apply(end("settle", call, "0.30"), at=12)]
    assert after == []
    after = ledger.apply(end("settle", "c3", "0.30"), at=13)
    # then the spend passed the cap by less than one call, and the last waiting call is refused
    assert [(v.call_id, v.granted) for v in after] == [("c4", False)]
    assert "Current spend: $1.20, max_budget_per_session: $1.00." in after[0].message
    assert ledger.state(f"{AGENT}|{SESSION}") == (4, Decimal("1.20"), 0)


def test_one_session_capped_another_free() -> None:
    ledger = SessionLedger(idle_s=60, lease_s=600)
    ledger.apply(reserve("a", budget="0.5"), at=1)
    ledger.apply(end("settle", "a", "0.5"), at=2)
    assert [v.granted for v in ledger.apply(reserve("b", budget="0.5"), at=3)] == [False]
    assert [v.granted for v in ledger.apply(reserve("c", budget="0.5", session="s-2"), at=3)] == [True]


def test_an_idle_session_starts_again_and_its_state_is_swept() -> None:
    ledger = SessionLedger(idle_s=10, lease_s=600)
    ledger.apply(reserve("a", iterations=1), at=100)
    assert [v.granted for v in ledger.apply(reserve("b", iterations=1), at=105)] == [False]
    # a record more than idle_s after the last one finds the session new
    assert [v.granted for v in ledger.apply(reserve("c", iterations=1), at=116)] == [True]
    assert len(ledger) == 1
    assert ledger.sweep(now=116 + 19) == 0
    assert ledger.sweep(now=116 + 21) == 1
    assert len(ledger) == 0


def test_a_call_nobody_ended_lapses_from_the_calls_in_flight() -> None:
    ledger = SessionLedger(idle_s=10_000, lease_s=60)
    ledger.apply(reserve("a", budget="1"), at=0)
    assert ledger.apply(reserve("b", budget="1"), at=1) == []  # waits behind a's unknown cost
    # b is granted once a lapsed; c waits behind b, whose cost is unknown
    assert [(v.call_id, v.granted) for v in ledger.apply(reserve("c", budget="1"), at=62)] == [("b", True)]
