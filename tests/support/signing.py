"""Writer keys for tests: the session's own pair, given to every process through the environment
(`SPENDPIPE_SIGNING__*`, set by the `signing_keys` fixture), and fresh pairs for the tests that
forge, rotate or switch writers."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.signatures import KEY_ID_HEADER, ROLES, Role
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.settings import SigningOnly
from spendpipe.platform.signing import Headers, SigningSettings, generate_key_pair, raw_key_pair


@dataclass(frozen=True)
class WriterKey:
    private: str
    """Raw base64, as `SPENDPIPE_SIGNING__PRIVATE_KEY` takes it."""
    public: str

    @classmethod
    def generate(cls) -> "WriterKey":
        return cls(*raw_key_pair())

    def env(self, *accepted: "WriterKey") -> dict[str, str]:
        """Settings of a process that signs with this key and accepts `accepted` (default: itself)."""
        publics = every_role(accepted or (self,))
        return {"SPENDPIPE_SIGNING__PRIVATE_KEY": self.private, "SPENDPIPE_SIGNING__PUBLIC_KEYS": json.dumps(publics)}

    def settings(self, *accepted: "WriterKey") -> SigningSettings:
        """A writer's settings: this private key, and `accepted` public keys (default: its own)."""
        return SigningSettings(private_key=SecretStr(self.private), public_keys=every_role(accepted or (self,)))


def every_role(keys: Sequence[WriterKey]) -> dict[Role, list[str]]:
    """`keys` accepted as every writer (one test key signs decisions, budgets and what gateways
    declare), scoped by role so that no process warns of unscoped keys."""
    return {role: [key.public for key in keys] for role in ROLES}


def reader_settings(*accepted: WriterKey) -> SigningSettings:
    """A gateway's settings: public keys only."""
    return SigningSettings(public_keys=every_role(accepted))


def signing_from_environment() -> SigningSettings:
    """What a process started now reads: the session's keys unless a test changed them."""
    return SigningOnly().signing


KEY_FILE_SETTINGS = ("SPENDPIPE_SIGNING__PRIVATE_KEY_FILE", "SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR")


def with_local_keys(env: dict[str, str], directory: Path) -> dict[str, str]:
    """`env` with the key files it names replaced by keys generated under `directory`: what
    compose's `keys` job, or Kubernetes' Secret and ConfigMap, put at those paths in a container."""
    private, public = env.get(KEY_FILE_SETTINGS[0]), env.get(KEY_FILE_SETTINGS[1])
    if private is None and public is None:
        return env
    public_dir = directory / "public"
    name = Path(private).stem if private else "enforcer"
    private_path = directory / "private" / f"{name}.key"
    if not private_path.exists():
        generate_key_pair(private_path, public_dir / f"{name}.pub")
    local = dict(env)
    if private is not None:
        local[KEY_FILE_SETTINGS[0]] = str(private_path)
    if public is not None:
        local[KEY_FILE_SETTINGS[1]] = str(public_dir)
    return local


def forged_headers(message_type: str, key: bytes, value: bytes | None, how: str, *, genuine: WriterKey) -> Headers:
    """Headers of a record a writer without an accepted key makes: `unsigned` (the type only),
    `unknown_key` (signed by a key of its own) or `bad_signature` (naming the `genuine` writer's
    key id, with a signature by another key)."""
    impostor = WriterKey.generate().settings().signer()
    if how == "unsigned":
        return [(TYPE_HEADER, message_type.encode())]
    if how == "unknown_key":
        return impostor.headers(message_type, key, value)
    genuine_id = genuine.settings().signer().key_id or ""
    return [
        (name, genuine_id.encode() if name == KEY_ID_HEADER else header)
        for name, header in impostor.headers(message_type, key, value)
    ]


def any_forged_headers(
    message_type: str, key: bytes, value: bytes | None, how: str, *, genuine: WriterKey
) -> list[tuple[str, bytes | None]]:
    """`forged_headers`, and `null_key_id`: signed by a key of its own whose id header has no
    value, as Kafka allows (counted as `unknown_key`)."""
    if how != "null_key_id":
        return list(forged_headers(message_type, key, value, how, genuine=genuine))
    impostor = WriterKey.generate().settings().signer()
    return [(name, None if name == KEY_ID_HEADER else v) for name, v in impostor.headers(message_type, key, value)]


async def write_records(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes | None, Sequence[tuple[str, bytes | None]]]]
) -> None:
    """Write records as they are, headers included, as anyone with write access to `topic` can."""
    producer = AIOKafkaProducer(**KafkaSettings(bootstrap_servers=bootstrap).aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await (await producer.send(topic, key=key, value=value, headers=headers))
    finally:
        await producer.stop()


async def publish_decisions(bootstrap: str, topic: str, decisions: Sequence[Decision]) -> None:
    """Decisions written as the enforcer writes them: JSON, keyed, signed with the session's
    writer key (what every reader in the tests accepts)."""
    signer = signing_from_environment().signer()
    records = []
    for decision in decisions:
        key, value = decision.key.encode(), decision.model_dump_json().encode()
        records.append((key, value, signer.headers(DECISION_TYPE, key, value)))
    await write_records(bootstrap, topic, records)


FORGED_AS = {
    "unsigned": "unsigned",
    "unknown_key": "unknown_key",
    "bad_signature": "bad_signature",
    "null_key_id": "unknown_key",
}
"""Each forgery `write_forgeries` tries, and the reason a reader counts it under."""


async def write_forgeries(bootstrap: str, topics: Topics, raised: Budget, *, genuine: WriterKey) -> None:
    """What a writer without an accepted key tries, on the key of `raised.scope`: an unblock at
    version 2^62 and the `raised` budget, each in the four forgeries of `FORGED_AS`, and an unsigned tombstone
    of the budget (4 records on the decisions topic, 5 on the budgets topic)."""
    key = raised.scope.encode()
    unblock = Decision(scope=raised.scope, version=2**62, blocked=False, reason="forged", decided_at=datetime.now(UTC))
    decision, budget = unblock.model_dump_json().encode(), raised.model_dump_json(exclude_none=True).encode()
    decisions = [
        (key, decision, any_forged_headers(DECISION_TYPE, key, decision, h, genuine=genuine)) for h in FORGED_AS
    ]
    budgets = [(key, budget, any_forged_headers(BUDGET_TYPE, key, budget, h, genuine=genuine)) for h in FORGED_AS]
    tombstone = (key, None, forged_headers(BUDGET_TYPE, key, None, "unsigned", genuine=genuine))
    await write_records(bootstrap, topics.decisions, decisions)
    await write_records(bootstrap, topics.budgets, [*budgets, tombstone])
