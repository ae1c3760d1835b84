"""Following a compacted topic from inside a gateway: a `BackgroundLoop` that reads the topic
from the beginning (a cold gateway rebuilds the state), sets `in_sync` once it reached the end
the topic had at start, then follows it.

Nothing starts in `__init__`; `start()` does, and reconnects after failures (reading again from
the beginning: the appliers keep the highest version, or put what is already there). `stop()`
may come at any moment, from any thread, even before `start()`: a stopped follower does not
start again.
"""

import asyncio
import logging
import threading

from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.compacted import CompactedTopicReader, OnRecord
from spendpipe.platform.kafka import KafkaSettings

log = logging.getLogger(__name__)


class TopicFollower:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        on_record: OnRecord,
        in_sync: threading.Event,
        name: str,
        retry_backoff_s: float = 1.0,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._on_record = on_record
        self._in_sync = in_sync
        self._name = name
        self._retry_backoff_s = retry_backoff_s
        self._background = BackgroundLoop(name=f"spendpipe-{name}", main=self._run)

    def start(self) -> None:
        self._background.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; what was read stays applied."""
        self._background.stop(timeout)

    async def _run(self) -> None:
        while True:
            try:
                async with CompactedTopicReader(
                    kafka=self._kafka, topic=self._topic, on_record=self._on_record
                ) as reader:
                    applied = await reader.catch_up()
                    if not self._in_sync.is_set():
                        log.info("spendpipe %s in sync: %d records read", self._name, applied)
                    self._in_sync.set()
                    await reader.follow()
            except Exception as error:
                log.warning("spendpipe %s reader failed, reconnecting: %r", self._name, error)
            await asyncio.sleep(self._retry_backoff_s)
