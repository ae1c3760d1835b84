"""Keeping a gateway's block list current: a daemon thread that reads `spend.decisions` from
the beginning (a cold gateway rebuilds every block), marks the list in sync once it reached the
end the topic had at start, then follows it.

Like the publisher, it owns its event loop so it works the same inside the LiteLLM proxy and in
SDK mode. Nothing starts in `__init__`; `start()` does, and reconnects after failures.
"""

import asyncio
import logging
import threading

from pydantic import ValidationError

from spendpipe.platform.compacted import CompactedTopicReader
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.schemas.decisions import Decision
from spendpipe.services.gateway.blocklist import BlockList

log = logging.getLogger(__name__)


class DecisionFollower:
    def __init__(self, *, kafka: KafkaSettings, topic: str, blocklist: BlockList, retry_backoff_s: float = 1.0) -> None:
        self._kafka = kafka
        self._topic = topic
        self._blocklist = blocklist
        self._retry_backoff_s = retry_backoff_s
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=asyncio.run, args=(self._run(),), name="spendpipe-decisions", daemon=True
                )
                self._thread.start()

    def _on_record(self, _: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            self._blocklist.apply(Decision.model_validate_json(value))
        except ValidationError as error:
            log.error("ignoring an unreadable decision: %s", error)

    async def _run(self) -> None:
        while True:
            reader = CompactedTopicReader(kafka=self._kafka, topic=self._topic, on_record=self._on_record)
            try:
                await reader.start()
                applied = await reader.catch_up()
                if not self._blocklist.in_sync.is_set():
                    log.info("spendpipe block list in sync: %d decisions read", applied)
                self._blocklist.in_sync.set()
                await reader.follow()
            except Exception as error:
                log.warning("spendpipe decisions reader failed, reconnecting: %r", error)
            finally:
                await reader.stop()
            await asyncio.sleep(self._retry_backoff_s)
