"""The traffic generator's requests and pacing, with a fake proxy and a fake clock."""

from collections import Counter
from typing import Any

from spendpipe.admin.cli_traffic import UNREACHABLE, TrafficPlan, run_traffic

PLAN = TrafficPlan(models=("gpt-4o-mini", "gpt-4o"), end_users=3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_take_models_and_end_customers_in_turn() -> None:
    bodies = [PLAN.request(n) for n in range(6)]

    assert [body["model"] for body in bodies] == ["gpt-4o-mini", "gpt-4o"] * 3
    assert [body["user"] for body in bodies] == ["customer-0", "customer-1", "customer-2"] * 2
    assert all(body["messages"][0]["role"] == "user" for body in bodies)


def test_counts_every_status_and_reports_each_answer() -> None:
    answers = iter([200, 200, 422, UNREACHABLE])
    sent: list[dict[str, Any]] = []
    tallies: list[int] = []

    def send(body: dict[str, Any]) -> int:
        sent.append(body)
        return next(answers)

    statuses = run_traffic(
        send=send, plan=PLAN, count=4, rate=0, on_answer=lambda n, seen: tallies.append(sum(seen.values()))
    )

    assert statuses == Counter({200: 2, 422: 1, UNREACHABLE: 1})
    assert sent == [PLAN.request(n) for n in range(4)]
    assert tallies == [1, 2, 3, 4]


def test_paces_requests_at_the_rate() -> None:
    clock = FakeClock()

    run_traffic(send=lambda body: 200, plan=PLAN, count=4, rate=2.0, clock=clock, sleep=clock.sleep)

    assert clock.slept == [0.0, 0.5, 0.5, 0.5]


def test_stops_when_asked_before_the_next_request() -> None:
    clock = FakeClock()
    sent: list[dict[str, Any]] = []

    def send(body: dict[str, Any]) -> int:
        sent.append(body)
        return 200

    statuses = run_traffic(
        send=send, plan=PLAN, count=0, rate=2.0, clock=clock, sleep=clock.sleep, stopped=lambda: len(sent) == 3
    )

    assert statuses == Counter({200: 3})
    assert clock.slept == [0.0, 0.5, 0.5, 0.5]
