"""Keeping a gateway's block list current: a daemon thread that reads `spend.decisions` from
the beginning (a cold gateway rebuilds every block), marks the list in sync once it reached the
end the topic had at start, then follows it.

Like the publisher, it owns its event loop so it works the same inside the LiteLLM proxy and in
SDK mode. Nothing starts in `__init__`; `start()` does, and reconnects after failures.
"""

import asyncio
import contextlib
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="spendpipe-decisions", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; the block list keeps what it has."""
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._run())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

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
