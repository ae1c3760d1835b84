"""The notifier's loop: read alerts and decisions in a consumer group, deliver, then commit.

The order is the whole argument: a record's offset is committed only after `deliver()` returned
(every webhook accepted) or the record was skipped on purpose, so whatever was not delivered is
read again by whoever holds the partition next, after a crash, a restart or a rebalance. Within
a partition records are delivered one after another, so the notifications of one key (one
partition) reach a webhook in the order the enforcer wrote them; a webhook that stays down holds
the notifier on that record (retrying, `spendpipe_notifier_stuck`) rather than skip it.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from pydantic import ValidationError

from spendpipe.contracts.alerts import BURN_RATE_MESSAGE_TYPE, BurnRateAlert, SoftBudgetAlert
from spendpipe.contracts.alerts import MESSAGE_TYPE as SOFT_BUDGET_TYPE
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import message_type
from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.notifications import Notification, of_alert, of_burn_rate, of_decision
from spendpipe.notifier.settings import NotifierSettings
from spendpipe.notifier.webhooks import WebhookDelivery
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.unreadable import TolerantConsumer

log = logging.getLogger(__name__)

RECORDS_PER_POLL = 100

Parse = Callable[[bytes], Notification]

ALERTS: dict[str, Parse] = {
    SOFT_BUDGET_TYPE: lambda value: of_alert(SoftBudgetAlert.model_validate_json(value)),
    BURN_RATE_MESSAGE_TYPE: lambda value: of_burn_rate(BurnRateAlert.model_validate_json(value)),
}
"""The alert types notified, by their `spendpipe-type` header. Only these: a record on spend.alerts
that calls itself a decision is not one (decisions are verified, and only on their own topic)."""


def _decision(value: bytes) -> Notification:
    return of_decision(Decision.model_validate_json(value))


class NotifierService:
    def __init__(self, *, settings: NotifierSettings, delivery: WebhookDelivery, metrics: NotifierMetrics) -> None:
        self._settings = settings
        self._delivery = delivery
        self._metrics = metrics
        self._verifier = settings.signing.verifier(
            message_type=DECISION_TYPE, topic=settings.topics.decisions, rejected=metrics.rejected
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = False

    def not_ready(self) -> str | None:
        return None if self._ready else "joining the consumer group"

    async def start(self) -> None:
        topics = self._settings.topics
        self._consumer = TolerantConsumer(
            topics.alerts,
            topics.decisions,
            **self._settings.kafka.aiokafka_kwargs(),
            group_id=self._settings.notifier_group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._settings.start_from,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(self._consumer), name="notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def wait(self) -> None:
        """Until the loop ends (it only ends by failing)."""
        if self._task is not None:
            await self._task

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=RECORDS_PER_POLL)
            self._ready = True
            for partition, records in batches.items():
                await self._handle_partition(consumer, partition, records)

    async def _handle_partition(
        self, consumer: AIOKafkaConsumer, partition: TopicPartition, records: list[TopicRecord]
    ) -> None:
        for record in records:
            notification = self._notification(record)
            if notification is not None:
                await self._delivery.deliver(notification)
            try:
                await consumer.commit({partition: record.offset + 1})
            except CommitFailedError:
                # the partition moved to another member while this record was retried: it reads
                # from the last commit, so this record (delivered) may be notified again
                log.warning("lost %s in a rebalance; its new owner notifies from the last commit", partition)
                return

    def _notification(self, record: TopicRecord) -> Notification | None:
        """The record's notification, or None for a record skipped on purpose (counted)."""
        topic = record.topic
        if topic == self._settings.topics.decisions and not self._verifier.accepts(record):
            return None
        if record.value is None:
            self._metrics.skipped.labels(topic, "tombstone").inc()
            return None
        parse = _decision if topic == self._settings.topics.decisions else ALERTS.get(message_type(record.headers))
        if parse is None:
            # spend.alerts may carry more types than this notifier knows: each is skipped, counted
            self._metrics.skipped.labels(topic, "unknown_type").inc()
            return None
        try:
            return parse(record.value)
        except ValidationError as error:
            log.error("skipping an invalid record at %s:%d@%d: %s", topic, record.partition, record.offset, error)
            self._metrics.skipped.labels(topic, "invalid").inc()
            return None
