"""Following a compacted topic from inside a gateway: a daemon thread that reads the topic from
the beginning (a cold gateway rebuilds the state), sets `in_sync` once it reached the end the
topic had at start, then follows it.

Like the publisher, it owns its event loop so it works the same inside the LiteLLM proxy and in
SDK mode. Nothing starts in `__init__`; `start()` does, and reconnects after failures. `stop()`
may come at any moment, from any thread, even before the thread ran or before `start()`: a
stopped follower does not start again.
"""

import asyncio
import contextlib
import logging
import threading

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
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                # loop and task exist before the thread runs, so a stop() at any moment cancels
                # the task (a cancel queued before the loop runs takes effect at its first step)
                self._loop = asyncio.new_event_loop()
                self._task = self._loop.create_task(self._run())
                self._thread = threading.Thread(
                    target=self._main, args=(self._loop, self._task), name=f"spendpipe-{self._name}", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; what was read stays applied."""
        with self._lock:
            self._stopped = True
            loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: stopped before
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None:
            thread.join(timeout)

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    async def _run(self) -> None:
        while True:
            reader = CompactedTopicReader(kafka=self._kafka, topic=self._topic, on_record=self._on_record)
            try:
                await reader.start()
                applied = await reader.catch_up()
                if not self._in_sync.is_set():
                    log.info("spendpipe %s in sync: %d records read", self._name, applied)
                self._in_sync.set()
                await reader.follow()
            except Exception as error:
                log.warning("spendpipe %s reader failed, reconnecting: %r", self._name, error)
            finally:
                await reader.stop()
            await asyncio.sleep(self._retry_backoff_s)
