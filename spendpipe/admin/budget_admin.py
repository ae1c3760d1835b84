"""The Python API for budgets: validate, publish to the compacted `spend.budgets` topic, read back.

    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers="..."), topics=Topics())
    admin.set({"scope": "team:search", "max_budget": "10", "budget_duration": "24h"})
    admin.delete("team:search")
    admin.current()

`set` validates first: an invalid budget raises `BudgetRejectedError` listing `field: reason`
lines, and nothing is published. The enforcer applies changes as they arrive, no restart.

Every record is signed with the writer key of `signing`, a deletion too, and carries a version
of this writer's clock (`contracts/budgets.py`: readers ignore a record older than one they read,
so a replayed genuine record changes nothing); `current()` lists only budgets an accepted key
signed. Writers of one scope need clocks that agree to within the time between two changes of it.
Without `signing=`, `SPENDPIPE_SIGNING__*` is read from the environment, as `BudgetManager` reads
its settings.
"""

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from spendpipe.contracts.budgets import MESSAGE_TYPE, Budget, BudgetDeletion, VersionClock, validate_budget
from spendpipe.contracts.scopes import Scope
from spendpipe.contracts.topics import Topics
from spendpipe.platform.budget_topic import BudgetTopic
from spendpipe.platform.compacted import TopicRecord, read_to_end
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.settings import SigningOnly, load_settings, require_keys
from spendpipe.platform.signing import SigningSettings, uncollected_rejections


class BudgetAdmin:
    def __init__(self, *, kafka: KafkaSettings, topics: Topics, signing: SigningSettings | None = None) -> None:
        self._kafka = kafka
        self._topic = topics.budgets
        self._signing = signing or load_settings(SigningOnly).signing
        self._versions = VersionClock()

    def set(self, document: Mapping[str, Any] | Budget) -> Budget:
        return self.set_many([document])[0]

    def set_many(self, documents: Iterable[Mapping[str, Any] | Budget]) -> list[Budget]:
        """Validate every budget, then publish them all; one invalid budget publishes none."""
        valid = [d if isinstance(d, Budget) else validate_budget(dict(d)) for d in documents]
        budgets = [budget.model_copy(update={"version": self._versions.next()}) for budget in valid]
        asyncio.run(self._send([(b.scope, b.model_dump_json(exclude_none=True).encode()) for b in budgets]))
        return budgets

    def delete(self, scope: str) -> None:
        deletion = BudgetDeletion(scope=str(Scope.parse(scope)), version=self._versions.next(), deleted=True)
        asyncio.run(self._send([(deletion.scope, deletion.model_dump_json().encode())]))

    def current(self) -> list[Budget]:
        return asyncio.run(self._read(self._signing))

    def resign(self, *, include_unsigned: bool = False) -> list[Budget]:
        """Publish every budget in force again, signed with this writer's key: after a key
        rotation, so the old key can be retired. `include_unsigned` also takes the records no
        accepted key signed (once, when turning signing on over a topic written without it):
        check the list it returns, since any writer of the topic could have put one there."""
        reading = self._signing.model_copy(update={"required": False}) if include_unsigned else self._signing
        budgets = asyncio.run(self._read(reading))
        return self.set_many(budgets) if budgets else []

    async def _send(self, records: list[tuple[str, bytes]]) -> None:
        require_keys(self._signing, writes=True, reads=False)
        signer = self._signing.signer()
        producer = AIOKafkaProducer(**self._kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all")
        try:
            await producer.start()  # inside the try: a broker that does not answer leaves nothing open
            pending = [
                await producer.send(
                    self._topic,
                    key=scope.encode(),
                    value=value,
                    headers=signer.headers(MESSAGE_TYPE, scope.encode(), value),
                )
                for scope, value in records
            ]
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    async def _read(self, signing: SigningSettings) -> list[Budget]:
        require_keys(signing, writes=False, reads=True)
        records = BudgetTopic(
            signing.verifier(message_type=MESSAGE_TYPE, topic=self._topic, rejected=uncollected_rejections())
        )
        current: dict[str, Budget] = {}

        def apply(record: TopicRecord) -> None:
            change = records.read(record)
            if change is None:
                return
            if change.budget is None:
                current.pop(change.scope, None)
            else:
                current[change.scope] = change.budget

        await read_to_end(kafka=self._kafka, topic=self._topic, on_record=apply)
        return sorted(current.values(), key=lambda b: b.scope)
