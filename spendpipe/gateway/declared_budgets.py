"""The gateway's side of key-declared budgets (`contracts/declared_budgets.py`): the budget each
virtual key carries, as the proxy hands the key to `async_pre_call_hook`, published once per
change to `spend.budgets.declared`, so the enforcer enforces it fleet-wide with no second
declaration.

On the request path `observe()` builds the key's budget and compares its bytes with the last this
gateway published for the key: a dict lookup and a comparison when nothing changed. A change is
queued (newest per key wins) for a background loop that publishes it signed with the gateway's
writer key; a key that stops declaring a budget it declared gets a tombstone. Every gateway that
sees a key publishes its budget once: the same bytes under the same key, so the enforcer applies
it once. What a key declares that is no valid budget is logged once per key and not published.

Publishing needs a writer key on the gateway (`SPENDPIPE_SIGNING__PRIVATE_KEY_FILE`) when
signatures are required; without one, key budgets are not published, and that is logged once at
start.
"""

import asyncio
import logging
import threading
from typing import Any

from aiokafka import AIOKafkaProducer

from spendpipe.contracts.declared_budgets import MESSAGE_TYPE, declared_key_budget
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.signing import RecordSigner, SigningSettings

log = logging.getLogger(__name__)

_RETRY_S = 1.0


class DeclaredBudgets:
    def __init__(self, *, kafka: KafkaSettings, topic: str, signer: RecordSigner | None) -> None:
        """`signer` None: publishing is off (no writer key where one is required)."""
        self._kafka = kafka
        self._topic = topic
        self._signer = signer
        self._lock = threading.Lock()
        self._published: dict[str, bytes | None] = {}
        """Per key scope, what this gateway published last (None: a tombstone)."""
        self._queued: dict[str, bytes | None] = {}
        self._wake = threading.Event()
        self._refused: set[str] = set()
        self._loop = BackgroundLoop(name="spendpipe-declared-budgets", main=self._run)

    def start(self) -> None:
        if self._signer is None:
            log.warning("spendpipe: budgets on LiteLLM keys are not published: this gateway has no writer key")
            return
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)

    def observe(self, key_hash: str | None, key: Any) -> None:
        """The request path: queue the key's budget if it changed since this gateway last published it."""
        if key_hash is None or self._signer is None:
            return
        scope = f"key:{key_hash}"
        try:
            budget = declared_key_budget(key_hash, key)
        except Exception as error:
            if scope not in self._refused:
                self._refused.add(scope)
                log.error("spendpipe: the budget LiteLLM's key %s declares is not valid: %s", scope, error)
            return
        value = budget.model_dump_json(exclude_none=True).encode() if budget is not None else None
        with self._lock:
            last = self._queued.get(scope, self._published.get(scope))
            if value == last or (value is None and scope not in self._published and scope not in self._queued):
                return
            self._queued[scope] = value
        self._wake.set()

    def queued(self) -> dict[str, bytes | None]:
        """What waits to be published, per key scope (None: a deletion)."""
        with self._lock:
            return dict(self._queued)

    async def _run(self) -> None:
        assert self._signer is not None
        producer: AIOKafkaProducer | None = None
        try:
            while True:
                if not await asyncio.to_thread(self._wake.wait, _RETRY_S):  # bounded: stop() is not held up
                    continue
                self._wake.clear()
                with self._lock:
                    batch, self._queued = self._queued, {}
                try:
                    if producer is None:
                        kwargs = self._kafka.aiokafka_kwargs()
                        producer = AIOKafkaProducer(**kwargs, enable_idempotence=True, acks="all")
                        await producer.start()
                    for scope, value in batch.items():
                        headers = self._signer.headers(MESSAGE_TYPE, scope.encode(), value)
                        await producer.send_and_wait(self._topic, key=scope.encode(), value=value, headers=headers)
                except Exception:
                    log.exception("spendpipe: publishing %d key budget(s) failed; retrying", len(batch))
                    with self._lock:
                        self._queued = batch | self._queued
                    await asyncio.sleep(_RETRY_S)
                    self._wake.set()
                    continue
                with self._lock:
                    self._published.update(batch)
        finally:
            if producer is not None:
                await producer.stop()


def declared_budgets(kafka: KafkaSettings, topic: str, signing: SigningSettings) -> DeclaredBudgets:
    """Publishing is on when this gateway can sign, or signatures are not required."""
    can_sign = not signing.required or signing.private_key is not None or signing.private_key_file is not None
    return DeclaredBudgets(kafka=kafka, topic=topic, signer=signing.signer() if can_sign else None)
