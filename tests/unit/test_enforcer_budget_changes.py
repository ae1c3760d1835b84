"""The enforcer service's bookkeeping of budget changes, alone: a change that arrives while
earlier ones are judged is judged on the next tick, never dropped. The FastStream broker is
wired but never started, and the store runs each call in line."""

from collections.abc import Callable, Sequence
from typing import Any

from faststream.kafka import KafkaBroker

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.signing.settings import SigningSettings


class InlineStore:
    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        return call(*args)


async def test_a_change_arriving_while_earlier_ones_are_judged_is_judged_on_the_next_tick() -> None:
    settings = EnforcerSettings(signing=SigningSettings(required=False))
    service = EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=InlineStore())  # type: ignore[arg-type]
    judged: list[list[str]] = []

    async def judge(scopes: Sequence[Scope]) -> None:
        judged.append(sorted(map(str, scopes)))
        if len(judged) == 1:
            service._pending_scopes.add("team:eng")  # the cap lowered again while the raise is judged

    async def publish(decisions: Sequence[Decision]) -> None:
        pass

    service._judge = judge  # type: ignore[method-assign]
    service._publish = publish  # type: ignore[method-assign]
    service.enforcer.reconcile = list  # type: ignore[method-assign]

    service._pending_scopes.add("team:eng")
    await service._apply_budget_changes()
    await service._apply_budget_changes()

    assert judged == [["team:eng"], ["team:eng"]]
