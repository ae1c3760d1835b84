"""What Kafka's acknowledgement of a send carries, for the doubles that stand in for a publisher:
the enforcer notes where each decision landed (`spendpipe/enforcer/decision_positions.py`)."""

from aiokafka import TopicPartition
from aiokafka.structs import RecordMetadata


def landed_at(offset: int, *, topic: str = "spend.decisions", partition: int = 0) -> RecordMetadata:
    """The acknowledgement of a record written at `offset` of `partition`."""
    return RecordMetadata(
        topic=topic,
        partition=partition,
        topic_partition=TopicPartition(topic, partition),
        offset=offset,
        timestamp=None,
        timestamp_type=0,
        log_start_offset=None,
    )
