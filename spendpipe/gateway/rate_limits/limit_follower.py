"""Keeping a gateway's rate limits and agent session caps current from `spend.budgets` (see
`TopicFollower`): a limit set or changed with `spendpipe budgets` applies at every gateway
without a restart; a deleted budget (a tombstone) takes its limits away. Records, tombstones
included, count only when a budget writer signed them (`platform/signing.py`)."""

import threading
from typing import Protocol

from spendpipe.contracts.budgets import Budget
from spendpipe.gateway.rate_limits.gate import RateGate
from spendpipe.gateway.sessions.caps import SessionCaps
from spendpipe.platform.budget_topic import BudgetTopic
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordVerifier
from spendpipe.platform.topic_follower import TopicFollower


class BudgetListener(Protocol):
    """Also told of every budget: the headroom lease gate (`gateway/leases/gate.py`)."""

    def put(self, budget: Budget) -> None: ...

    def delete(self, scope: str) -> None: ...


class LimitFollower(TopicFollower):
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        gate: RateGate,
        verifier: RecordVerifier,
        sessions: SessionCaps | None = None,
        leases: BudgetListener | None = None,
        retry_backoff_s: float = 1.0,
    ) -> None:
        self.in_sync = threading.Event()
        super().__init__(
            kafka=kafka,
            topic=topic,
            on_record=self._on_record,
            in_sync=self.in_sync,
            name="limits",
            retry_backoff_s=retry_backoff_s,
        )
        self._gate = gate
        self._sessions = sessions or SessionCaps()
        self._leases = leases
        self._budgets = BudgetTopic(verifier)

    def _on_record(self, record: TopicRecord) -> None:
        change = self._budgets.read(record)
        if change is None:
            return
        if change.budget is None:
            self._gate.delete(change.scope)
            self._sessions.delete(change.scope)
            if self._leases is not None:
                self._leases.delete(change.scope)
            return
        self._gate.put(change.budget)
        self._sessions.put(change.budget)
        if self._leases is not None:
            self._leases.put(change.budget)
