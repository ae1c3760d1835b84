"""A real broker that authenticates with SASL/SCRAM and authorizes with the KRaft
StandardAuthorizer (deploy/kafka/sasl-acls.properties), with spendpipe's principals and the ACLs
of deploy/kafka/acls.sh; and probes that try one write or read as one principal through
spendpipe's own client settings (`KafkaSettings.aiokafka_kwargs()`)."""

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from dev.local_kafka import ROOT, LocalBroker, free_port_pair
from spendpipe.platform.kafka import KafkaSettings

KAFKA = ROOT / "deploy" / "kafka"
OVERLAY = KAFKA / "sasl-acls.properties"
ACLS = KAFKA / "acls.sh"

SUPERUSER = "kafka-admin"
"""The broker's own login and the Kafka administrator who runs acls.sh (a super user)."""

FORMAT_TIME_USERS = {
    "gateway": "SCRAM-SHA-256",
    "aggregator": "SCRAM-SHA-512",
    "enforcer": "SCRAM-SHA-512",
    "spendpipe-admin": "SCRAM-SHA-512",
}
"""Principals whose credentials `kafka-storage format --add-scram` writes (both mechanisms are
used, so both are shown to work through spendpipe's clients)."""

NAMING_VARIABLES = ("SPENDPIPE_TOPICS__", "SPENDPIPE_GROUP_ID", "SPENDPIPE_ENFORCER_GROUP_ID")
"""What acls.sh reads topic and group names from, as the services do."""

RUNTIME_USERS = {"reader": "SCRAM-SHA-512"}
"""Principals created on the running cluster with `acls.sh user` (kafka-configs)."""


@dataclass
class SecuredBroker:
    broker: LocalBroker
    passwords: dict[str, str]
    admin_properties: Path
    """Client properties of the super user, for the Kafka tools' --command-config."""
    mechanisms: dict[str, str] = field(default_factory=lambda: {**FORMAT_TIME_USERS, **RUNTIME_USERS})

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def settings(self, principal: str, password: str | None = None) -> KafkaSettings:
        """What a service configured as `principal` connects with (SPENDPIPE_KAFKA__SASL_*)."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            client_id=f"acl-test-{principal}",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=self.mechanisms.get(principal, "SCRAM-SHA-512"),
            sasl_username=principal,
            sasl_password=SecretStr(password if password is not None else self.passwords[principal]),
        )

    def acls(self, *args: str, stdin: str | None = None) -> str:
        """Run deploy/kafka/acls.sh as the Kafka administrator; its output."""
        return run_acls(
            *args, "--bootstrap-server", self.bootstrap, "--command-config", str(self.admin_properties), stdin=stdin
        )


def run_acls(*args: str, stdin: str | None = None) -> str:
    """deploy/kafka/acls.sh with the default topic and group names (no variable that renames
    them reaches it); its output."""
    result = subprocess.run(
        [str(ACLS), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={name: value for name, value in os.environ.items() if not name.startswith(NAMING_VARIABLES)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"acls.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def secured_broker(directory: Path, *, authorizer: bool = True) -> Iterator[SecuredBroker]:
    """A broker in `directory` with deploy/kafka/sasl-acls.properties filled in, the principals'
    SCRAM credentials written at format time, and nothing granted yet. `authorizer=False` drops
    the authorizer lines (the mutant check: every ACL test must then fail)."""
    passwords = {name: secrets.token_hex(12) for name in [SUPERUSER, *FORMAT_TIME_USERS, *RUNTIME_USERS]}
    overlay = (
        OVERLAY.read_text()
        .replace("@SUPERUSER@", SUPERUSER)
        .replace("@SUPERUSER_PASSWORD@", passwords[SUPERUSER])
        .replace("@CONTROLLER_PASSWORD@", secrets.token_hex(12))
    )
    if not authorizer:
        overlay = "\n".join(line for line in overlay.splitlines() if not line.startswith("authorizer.class.name"))
    config = directory / "sasl-acls.properties"
    config.write_text(overlay)
    config.chmod(0o600)
    admin_properties = directory / "kafka-admin.properties"
    admin_properties.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{SUPERUSER}" password="{passwords[SUPERUSER]}";\n'
    )
    admin_properties.chmod(0o600)
    credentials = [f"SCRAM-SHA-512=[name={SUPERUSER},password={passwords[SUPERUSER]}]"]
    credentials += [f"{mech}=[name={name},password={passwords[name]}]" for name, mech in FORMAT_TIME_USERS.items()]
    broker = LocalBroker(directory / "kafka", free_port_pair(), config=config, scram=tuple(credentials))
    broker.start()
    try:
        yield SecuredBroker(broker=broker, passwords=passwords, admin_properties=admin_properties)
    finally:
        broker.stop()


async def produce(
    kafka: KafkaSettings, topic: str, value: bytes, key: bytes = b"acl-test", *, idempotent: bool = True
) -> None:
    """One record, sent the way spendpipe's producers send (idempotent, acks=all); raises what
    the broker answered (`TopicAuthorizationFailedError` for a topic the principal may not write)."""
    producer = AIOKafkaProducer(
        **kafka.aiokafka_kwargs(), enable_idempotence=idempotent, acks="all", request_timeout_ms=15_000
    )
    try:
        await producer.start()
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def consume_in_group(kafka: KafkaSettings, topic: str, group: str, until: bytes, *, within_s: float) -> None:
    """Read `topic` from the beginning as a member of `group`, as the aggregator and the
    enforcer do, until a record whose value is `until`; commit. Raises what the broker answered
    (`GroupAuthorizationFailedError`, `TopicAuthorizationFailedError`) or `AssertionError`."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.aiokafka_kwargs(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        await consumer.start()
        seen = await _poll_for(consumer, until, within_s)
        assert seen, f"{kafka.sasl_username} did not read {until!r} from {topic} in group {group}"
        await consumer.commit()
    finally:
        await consumer.stop()


async def read_partition_zero(kafka: KafkaSettings, topic: str, until: bytes, *, within_s: float) -> bool:
    """Read partition 0 of `topic` without a group; True once `until` was seen. Raises what the
    broker answered (`TopicAuthorizationFailedError`)."""
    consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs(), enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        await consumer.start()
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        return await _poll_for(consumer, until, within_s)
    finally:
        await consumer.stop()


async def _poll_for(consumer: AIOKafkaConsumer, value: bytes, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        if any(record.value == value for records in batches.values() for record in records):
            return True
    return False
