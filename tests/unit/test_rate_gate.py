"""The gateway-local layer: a true sliding minute per (scope, model), requests in flight with
leases that always end, and the refusals and remaining capacity a client sees."""

from spendpipe.contracts.budgets import validate_budget
from spendpipe.gateway.rate_limits.gate import RateGate
from spendpipe.gateway.rate_limits.in_flight import InFlight
from spendpipe.gateway.rate_limits.sliding_window import SlidingWindow

KEY = "key:" + "b" * 64
T0 = 1_795_000_000.0
"""20 s before a minute boundary (1795000020 is a multiple of 60)."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gate_with(*budgets: dict[str, object], now: float = T0) -> tuple[RateGate, Clock]:
    clock = Clock(now)
    gate = RateGate(lease_s=600, clock=clock)
    for budget in budgets:
        gate.put(validate_budget(budget))
    return gate, clock


def test_a_sliding_minute_forgets_a_request_exactly_60_s_later() -> None:
    window = SlidingWindow()
    window.admit(("s", ""), T0)
    window.admit(("s", ""), T0 + 30)

    assert window.requests_free_at(("s", ""), 2, T0 + 45) == T0 + 60
    assert window.requests(("s", ""), T0 + 59.999) == 2
    assert window.requests(("s", ""), T0 + 60) == 1
    assert window.requests(("s", ""), T0 + 90) == 0


def test_tokens_leave_the_window_with_their_request() -> None:
    window = SlidingWindow()
    window.add_tokens(("s", ""), (10, 20, 30), T0)
    window.add_tokens(("s", ""), (1, 2, 3), T0 + 10)

    assert [window.tokens(("s", ""), kind, T0 + 10) for kind in ("input", "output", "total")] == [11, 22, 33]
    assert window.tokens_free_at(("s", ""), "total", 5, T0 + 10) == T0 + 60
    assert window.tokens_free_at(("s", ""), "total", 3, T0 + 10) == T0 + 70
    assert window.tokens(("s", ""), "total", T0 + 60) == 3


def test_a_burst_across_a_minute_boundary_is_refused() -> None:
    gate, clock = gate_with({"scope": KEY, "rpm_limit": 3})
    clock.now = T0 + 19.5  # half a second before the minute turns
    admitted_before = [gate.admit(f"a{n}", [KEY], "gpt-4o") is None for n in range(3)]
    clock.now = T0 + 20.5  # half a second after

    refusal = gate.admit("b", [KEY], "gpt-4o")

    assert admitted_before == [True, True, True]
    assert refusal is not None
    assert refusal.rate_limit_type == "requests"
    assert refusal.retry_at == T0 + 79.5
    assert refusal.message.startswith(f"Rate limit exceeded for {KEY}: 3 requests in the last 60s, rpm_limit 3")


def test_a_refused_request_is_not_counted() -> None:
    gate, clock = gate_with({"scope": KEY, "rpm_limit": 1})
    gate.admit("a", [KEY], "m")
    for n in range(5):
        assert gate.admit(f"refused{n}", [KEY], "m") is not None
    clock.now += 60

    assert gate.admit("b", [KEY], "m") is None


def test_tpm_counts_the_tokens_of_its_type_once_a_call_ends() -> None:
    gate, _ = gate_with({"scope": KEY, "tpm_limit": 40, "token_rate_limit_type": "output"})
    assert gate.admit("a", [KEY], "m") is None
    assert gate.admit("b", [KEY], "m") is None  # the first call's tokens are not known yet
    gate.finish("a", (100, 20, 120))
    gate.finish("a", (100, 20, 120))  # a second hook for the same call counts nothing
    assert gate.admit("c", [KEY], "m") is None  # 20 output tokens < 40
    gate.finish("b", (100, 20, 120))

    refusal = gate.admit("d", [KEY], "m")

    assert refusal is not None
    assert refusal.rate_limit_type == "tokens"
    assert "40 output tokens in the last 60s, tpm_limit 40 per sliding minute" in refusal.message


def test_a_model_limit_counts_only_its_model() -> None:
    gate, _ = gate_with({"scope": "team:eng", "model_rpm_limit": {"gpt-4o": 1}})
    assert gate.admit("a", ["team:eng"], "gpt-4o") is None

    refused = gate.admit("b", ["team:eng"], "gpt-4o")

    assert refused is not None
    assert "team:eng on model gpt-4o" in refused.message
    assert "model_rpm_limit[gpt-4o] 1" in refused.message
    assert gate.admit("c", ["team:eng"], "gpt-4o-mini") is None


def test_max_parallel_requests_frees_a_slot_on_success_failure_or_lapse() -> None:
    gate, clock = gate_with({"scope": KEY, "max_parallel_requests": 2})
    assert gate.admit("a", [KEY], "m") is None
    assert gate.admit("b", [KEY], "m") is None
    refused = gate.admit("c", [KEY], "m")
    assert refused is not None
    assert refused.rate_limit_type == "max_parallel_requests"

    gate.finish("a", None)  # a failed call
    assert gate.admit("d", [KEY], "m") is None
    clock.now += 600  # nothing ever reported the end of b or d: their leases lapse
    assert gate.admit("e", [KEY], "m") is None
    assert gate.admit("f", [KEY], "m") is None


def test_in_flight_ignores_unknown_and_repeated_leases() -> None:
    leases = InFlight(lease_s=10)
    leases.take("a", ["s", "t"], T0)
    leases.take("a", ["s", "t"], T0)

    assert leases.count("s", T0) == 1
    assert leases.give_back("a") is True
    assert leases.give_back("a") is False
    assert leases.give_back("never") is False
    assert leases.count("t", T0) == 0


def test_remaining_is_the_tightest_limit_of_the_request() -> None:
    gate, _ = gate_with(
        {"scope": KEY, "rpm_limit": 10, "tpm_limit": 1000}, {"scope": "team:eng", "model_rpm_limit": {"m": 3}}
    )
    gate.admit("a", [KEY, "team:eng"], "m")
    gate.finish("a", (10, 20, 30))

    left = gate.remaining([KEY, "team:eng"], "m")

    assert (left.requests, left.request_limit, left.tokens, left.token_limit) == (2, 3, 970, 1000)


def test_a_scope_without_limits_is_not_counted_and_limits_change_in_place() -> None:
    gate, _ = gate_with({"scope": KEY, "rpm_limit": 1})
    assert gate.admit("a", ["user:alice"], "m") is None
    assert gate.remaining(["user:alice"], "m").requests is None
    gate.admit("b", [KEY], "m")
    assert gate.admit("c", [KEY], "m") is not None

    gate.put(validate_budget({"scope": KEY, "rpm_limit": 5}))
    assert gate.admit("d", [KEY], "m") is None
    gate.delete(KEY)
    assert gate.remaining([KEY], "m").requests is None


def test_logs_of_idle_scopes_are_swept_and_a_removed_limit_drops_its_logs() -> None:
    window = SlidingWindow()
    window.admit(("idle", ""), T0)
    window.add_tokens(("idle", "m"), (1, 1, 2), T0)
    window.admit(("busy", ""), T0 + 30)

    window.sweep(T0 + 60)  # nobody looked "idle" up again: its logs go all the same
    assert len(window) == 1
    window.forget("busy")
    assert len(window) == 0

    gate, _ = gate_with({"scope": KEY, "rpm_limit": 5}, {"scope": "team:eng", "rpm_limit": 5})
    gate.admit("a", [KEY, "team:eng"], "m")
    gate.delete(KEY)
    gate.put(validate_budget({"scope": "team:eng", "max_budget": 10}))  # a budget left, no limit
    assert len(gate._window) == 0


def test_leases_lapse_in_the_order_they_were_taken() -> None:
    leases = InFlight(lease_s=10)
    leases.take("a", ["s"], T0)
    leases.take("b", ["s"], T0 + 1)
    leases.take("c", ["s", "t"], T0 + 2)
    leases.give_back("b")

    assert leases.count("s", T0 + 9.9) == 2
    assert leases.count("s", T0 + 10) == 1  # a lapsed
    assert leases.count("t", T0 + 11) == 1  # b was given back, not lapsed a second time
    assert (leases.count("s", T0 + 12), leases.count("t", T0 + 12)) == (0, 0)
    assert leases.give_back("c") is False
