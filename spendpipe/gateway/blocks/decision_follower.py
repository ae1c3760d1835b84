"""Keeping a gateway's block list current from `spend.decisions` (see `TopicFollower`): the
list is marked in sync once the topic was read to the end it had when the gateway started.

A record is verified before it is parsed: one the enforcer did not sign never reaches the block
list, so no forged version can outrank the enforcer's (`platform/signing.py`)."""

import logging

from pydantic import ValidationError

from spendpipe.contracts.decisions import Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordVerifier
from spendpipe.platform.topic_follower import TopicFollower

log = logging.getLogger(__name__)


class DecisionFollower(TopicFollower):
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        blocklist: BlockList,
        verifier: RecordVerifier,
        retry_backoff_s: float = 1.0,
    ) -> None:
        super().__init__(
            kafka=kafka,
            topic=topic,
            on_record=self._on_record,
            in_sync=blocklist.in_sync,
            name="decisions",
            retry_backoff_s=retry_backoff_s,
        )
        self._blocklist = blocklist
        self._verifier = verifier

    def _on_record(self, record: TopicRecord) -> None:
        """An accepted writer's tombstone takes nothing away: the enforcer never deletes a
        decision, it publishes the next one."""
        value = self._verifier.accepted_value(record)
        if value is None:
            return
        try:
            self._blocklist.apply(Decision.model_validate_json(value))
        except ValidationError as error:
            log.error("ignoring an unreadable decision: %s", error)
