"""Creating spendpipe's topics with the partitions and cleanup policies they need."""

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from spendpipe.contracts.topics import Topics
from spendpipe.platform.kafka import KafkaSettings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact"}
SESSIONS = {"message.timestamp.type": "LogAppendTime", "retention.ms": str(7 * 24 * 3600 * 1000)}
"""The broker stamps session records, so their times grow with their offsets in a partition (the
idle rule compares them); a week of records is what a cold gateway reads back, so a session that
lives longer than that may be counted short by a gateway that started after its first records
were deleted."""
EVENTS = {"message.timestamp.type": "LogAppendTime"}
"""The broker stamps events: the aggregator measures how long records waited from their times, and
a writer's own time (any, from 1970 to an hour ahead) would make that figure what it chose."""
LEASES = {"retention.ms": str(3600 * 1000)}
"""Lease requests and grants matter for seconds (a chain lives a TTL); an hour is plenty."""


def topic_specs(topics: Topics, *, partitions: int, replication: int) -> list[NewTopic]:
    """Events and flushes are streams; decisions and budgets (declared ones too) are compacted, keyed by scope,
    so a cold reader rebuilds the current state from the beginning."""
    plain = [topics.events_dead_letter, topics.flushes, topics.alerts]
    compacted = [topics.decisions, topics.budgets, topics.declared_budgets]
    return [
        NewTopic(topics.events, partitions, replication, topic_configs=EVENTS),
        *(NewTopic(name, partitions, replication) for name in plain),
        *(NewTopic(name, partitions, replication, topic_configs=COMPACTED) for name in compacted),
        NewTopic(topics.sessions, partitions, replication, topic_configs=SESSIONS),
        *(
            NewTopic(name, partitions, replication, topic_configs=LEASES)
            for name in (topics.lease_requests, topics.leases)
        ),
    ]


async def ensure_topics(kafka: KafkaSettings, specs: list[NewTopic], *, timeout_ms: int = 30_000) -> list[str]:
    """Create the topics that do not exist yet. Returns the names created now. Raises
    `TopicsRefusedError` when the broker refused any (no ACL to create it, a bad setting): the
    broker answers such a refusal per topic, inside a successful response."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs(), request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        try:
            response = await admin.create_topics(missing, timeout_ms=timeout_ms)
        except TopicAlreadyExistsError:
            log.info("topics were created concurrently")
            return []
        created, refused = [], []
        for topic, code, *message in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code == TopicAlreadyExistsError.errno:
                log.info("topic %s was created concurrently", topic)
            else:
                refused.append(
                    f"{topic}: {for_code(code).__name__}" + (f" ({message[0]})" if message and message[0] else "")
                )
        if refused:
            raise TopicsRefusedError("the broker refused to create " + "; ".join(refused))
        return created
    finally:
        await admin.close()


class TopicsRefusedError(RuntimeError):
    """The broker refused to create some of spendpipe's topics."""


async def partition_numbers(kafka: KafkaSettings, topic: str) -> list[int]:
    """The partitions of `topic`, in order. Raises `RuntimeError` if the topic does not exist."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(int(p["partition"]) for p in description.get("partitions", ()))
    if not numbers:
        raise RuntimeError(f"topic {topic} does not exist (spendpipe topics create makes it)")
    return numbers
