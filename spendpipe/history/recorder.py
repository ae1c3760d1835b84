"""Follows `spend.decisions` and `spend.budgets` and writes each accepted record into the store.

It runs in the process that runs the enforcer (`runner.py`), with that process's writable store.
Each topic is read from its beginning at every start and then followed (`TopicFollower`, which
also reconnects after failures); a record is accepted only with a signature the enforcer's
settings accept, so a forged block or cap never reaches the history. Rows wait in memory and are
inserted every `flush_interval_s`, one block per table; a failed insert is tried again at the
next flush, and what is read again after a restart or a reconnect adds no row once the tables
merge (migration 0008). A record that does not parse is logged and skipped: raising would make
the follower read the topic again from the beginning, forever.
"""

import asyncio
import contextlib
import logging
import threading
from typing import Any

from pydantic import ValidationError

from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import Topics
from spendpipe.history.rows import (
    BUDGET_COLUMNS,
    BUDGET_TABLE,
    DECISION_COLUMNS,
    DECISION_TABLE,
    RecordAt,
    budget_rows,
    decision_row,
)
from spendpipe.platform.budget_topic import BudgetTopic
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import SigningSettings, uncollected_rejections
from spendpipe.platform.topic_follower import TopicFollower

log = logging.getLogger(__name__)


class HistoryRecorder:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topics: Topics,
        signing: SigningSettings,
        store: ClickhouseStore,
        flush_interval_s: float = 0.5,
    ) -> None:
        self._store = store
        self._flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, ...]]] = {DECISION_TABLE: [], BUDGET_TABLE: []}
        self._decisions = signing.verifier(
            message_type=DECISION_TYPE, topic=topics.decisions, rejected=uncollected_rejections()
        )
        self._budgets = BudgetTopic(
            signing.verifier(message_type=BUDGET_TYPE, topic=topics.budgets, rejected=uncollected_rejections())
        )
        self.in_sync = {name: threading.Event() for name in (DECISION_TABLE, BUDGET_TABLE)}
        """Set once each topic was read to the end it had at start (its rows may still be pending)."""
        self._followers = [
            TopicFollower(
                kafka=kafka,
                topic=topics.decisions,
                on_record=self._on_decision,
                in_sync=self.in_sync[DECISION_TABLE],
                name="decision-history",
            ),
            TopicFollower(
                kafka=kafka,
                topic=topics.budgets,
                on_record=self._on_budget,
                in_sync=self.in_sync[BUDGET_TABLE],
                name="budget-history",
            ),
        ]
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for follower in self._followers:
            follower.start()
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for follower in self._followers:
            await asyncio.to_thread(follower.stop)
        await self.flush()

    async def flush(self) -> None:
        """Insert what is pending, one block per table; on failure it stays pending."""
        for table, names in ((DECISION_TABLE, DECISION_COLUMNS), (BUDGET_TABLE, BUDGET_COLUMNS)):
            with self._lock:
                rows, self._pending[table] = self._pending[table], []
            if not rows:
                continue
            try:
                await self._store.run(self._store.insert_columns, table, list(zip(*rows, strict=True)), names)
            except Exception as error:
                log.warning("could not write %d rows to %s, trying again: %r", len(rows), table, error)
                with self._lock:
                    self._pending[table][:0] = rows

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)  # the write interval
            await self.flush()

    def _on_decision(self, record: TopicRecord) -> None:
        value = self._decisions.accepted_value(record)
        if value is None:
            return
        try:
            row = decision_row(Decision.model_validate_json(value))
        except ValidationError as error:
            log.warning("skipping decision at %s:%d: %s", record.partition, record.offset, error)
            return
        self._add(DECISION_TABLE, [row])

    def _on_budget(self, record: TopicRecord) -> None:
        change = self._budgets.read(record)
        if change is None:
            return
        at = RecordAt(record.topic, record.partition, record.offset, record.timestamp)
        document = "" if change.budget is None else (record.value or b"").decode(errors="replace")
        self._add(BUDGET_TABLE, budget_rows(at, change.scope, change.budget, document, change.version))

    def _add(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._pending[table].extend(rows)
