"""One coroutine on its own event loop in a daemon thread: how the gateway's publisher, topic
followers and sessions log run inside someone else's process. Owning the loop works the same in
the LiteLLM proxy (uvicorn's loop stays free) and in SDK mode (no loop, or one the application
owns).

Lifecycle: nothing runs in `__init__`. `start()` creates the loop and the task before the thread
exists, so `stop()` may come at any moment, from any thread, any number of times, even before
`start()` or before the thread ran: a cancel queued before the loop runs takes effect at the
task's first step. A stopped loop never starts again. When the coroutine ends, what it left
running is cancelled and the loop is closed, as `asyncio.run` does.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self, *, name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """`name` names the thread; `main` makes the coroutine the thread runs."""
        self._name = name
        self._main = main
        self._lock = threading.Lock()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start the thread unless it was started or stopped before. True if this call started it."""
        if self._thread is not None or self._stopped:  # the common case, without the lock
            return False
        with self._lock:
            if self._thread is not None or self._stopped:
                return False
            self._loop = asyncio.new_event_loop()
            self._task = self._loop.create_task(self._main())
            self._thread = threading.Thread(
                target=_run, args=(self._name, self._loop, self._task), name=self._name, daemon=True
            )
            self._thread.start()
            return True

    def stop(self, timeout: float = 10.0, *, cancel: bool = True) -> bool:
        """Cancel the coroutine (with `cancel=False`, let it end by itself: it watches a flag of
        its own) and wait up to `timeout` for the thread. True when no thread is left running."""
        with self._lock:
            self._stopped = True
            loop, task, thread = self._loop, self._task, self._thread
        if cancel and loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the coroutine ended
                loop.call_soon_threadsafe(task.cancel)
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    @property
    def alive(self) -> bool:
        """The thread runs (started and not ended yet)."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Run `coroutine` on this loop, from another thread. Raises `RuntimeError` when the loop
        is not there (not started) or closed (ended)."""
        loop = self._loop
        try:
            if loop is None:
                raise RuntimeError(f"{self._name} is not started")
            return asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:
            coroutine.close()  # never awaited, and never will be
            raise


def _run(name: str, loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("spendpipe %s ended on an error", name)
    finally:
        _close(loop)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """What `asyncio.run` does once its coroutine ended: cancel what is left, then close."""
    try:
        leftovers = asyncio.all_tasks(loop)
        for leftover in leftovers:
            leftover.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
