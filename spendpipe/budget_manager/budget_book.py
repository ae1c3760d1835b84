"""The user budgets a `BudgetManager` answers from: kept current by following `spend.budgets`
(signed records only, as every reader of the topic), so a lookup reads memory, not the topic.

A budget this process wrote is answered at once from `_written` until the follower reads that
same record back: a later read never goes back to an older budget while the topic catches up.
"""

import threading

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.platform.budget_topic import BudgetTopic
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordVerifier
from spendpipe.platform.topic_follower import TopicFollower


class UserBudgets:
    def __init__(self, *, kafka: KafkaSettings, topic: str, verifier: RecordVerifier, sync_wait_s: float) -> None:
        self.in_sync = threading.Event()
        self._budgets = BudgetTopic(verifier)
        self._sync_wait_s = sync_wait_s
        self._lock = threading.Lock()
        self._read: dict[str, Budget] = {}
        self._written: dict[str, Budget] = {}
        self._follower = TopicFollower(
            kafka=kafka, topic=topic, on_record=self._on_record, in_sync=self.in_sync, name="budget-manager"
        )

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def wait_in_sync(self) -> bool:
        """Wait, up to `sync_wait_s` after the first call, until the topic was read to its end."""
        self.start()
        return self.in_sync.wait(self._sync_wait_s)

    def get(self, user: str) -> Budget | None:
        scope = str(Scope(ScopeType.USER, user))
        with self._lock:
            found = self._written.get(scope) or self._read.get(scope)
        if found is None and not self.in_sync.is_set() and self.wait_in_sync():
            return self.get(user)
        return found

    def users(self) -> list[str]:
        self.wait_in_sync()
        with self._lock:
            scopes = sorted(self._read.keys() | self._written.keys())
        return [Scope.parse(s).id for s in scopes if s.startswith(f"{ScopeType.USER.value}:")]

    def wrote(self, budget: Budget) -> None:
        with self._lock:
            self._written[budget.scope] = budget

    def _on_record(self, record: TopicRecord) -> None:
        change = self._budgets.read(record)
        if change is None:
            return
        scope, budget = change.scope, change.budget
        with self._lock:
            if budget is None:
                self._read.pop(scope, None)
            else:
                self._read[scope] = budget
            if scope in self._written and self._written[scope] == budget:
                del self._written[scope]
