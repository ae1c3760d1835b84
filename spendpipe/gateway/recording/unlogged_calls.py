"""The calls LiteLLM has started but not yet logged, so `close()` can wait for their events.

LiteLLM logs a call after `completion()` has returned: the sync SDK submits
`Logging.success_handler` to its logging thread pool (`litellm_core_utils/thread_pool_executor.py`,
`executor.submit` in `utils.py`'s `wrapper`), and `acompletion` enqueues `async_success_handler` on
`GLOBAL_LOGGING_WORKER`, a task on the caller's event loop. LiteLLM offers no way to wait for the
thread pool (the worker's `flush()` covers async calls only, and runs on that loop), so the plugin
keeps its own account: a call enters at `log_pre_api_call`, which LiteLLM runs before it hands the
call to the provider, and leaves once its success or failure was recorded (a failure of a sync
call is logged before `completion()` raises).

A retry reuses its call's id (LiteLLM's `acompletion_with_retries` and the router pass the first
attempt's `litellm_call_id` on), and an attempt's log may come after the next attempt started
(the router retries once the failure is raised; LiteLLM may log it later, on its worker). So an
id is counted, not just marked: it leaves once each attempt that started under it was logged,
and `close()` still waits for the retry after the first attempt's log.

A call LiteLLM never logs (a stream nobody reads to its end, a logging task dropped from LiteLLM's
full backlog) is forgotten after `forget_after_s`, so the account stays small in a proxy that runs
for months; `close()` merely waits its bound for such a call.
"""

import threading
import time
from collections.abc import Callable


class UnloggedCalls:
    """Thread-safe: LiteLLM starts calls on the caller's threads and logs them on its own."""

    def __init__(self, *, forget_after_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._forget_after_s = forget_after_s
        self._clock = clock
        self._started: dict[str, tuple[float, int]] = {}
        """call id -> (when its last attempt started, attempts not yet logged); insertion order is
        age order"""
        self._changed = threading.Condition()
        self._waiting = 0
        """How many `wait_logged` wait: only then does a logged call notify (on every call else)."""

    def started(self, call_id: object) -> None:
        if not isinstance(call_id, str):
            return
        with self._changed:
            now = self._clock()
            _, attempts = self._started.pop(call_id, (now, 0))  # a retry under the same id: the newest again
            self._started[call_id] = (now, attempts + 1)
            while (oldest := next(iter(self._started))) != call_id and self._started[oldest][
                0
            ] < now - self._forget_after_s:
                del self._started[oldest]

    def logged(self, call_id: object) -> None:
        if not isinstance(call_id, str):
            return
        with self._changed:
            started = self._started.get(call_id)
            if started is None:
                return
            when, attempts = started
            if attempts > 1:
                self._started[call_id] = (when, attempts - 1)
                return
            del self._started[call_id]
            if self._waiting:
                self._changed.notify_all()

    def wait_logged(self, timeout: float) -> int:
        """Block until every call started so far was logged, at most `timeout` seconds (calls
        started meanwhile do not extend the wait). Returns how many are still not logged."""
        with self._changed:
            waiting = set(self._started)
            self._waiting += 1
            try:
                self._changed.wait_for(lambda: waiting.isdisjoint(self._started), timeout)
            finally:
                self._waiting -= 1
            return len(waiting.intersection(self._started))

    def __len__(self) -> int:
        return len(self._started)
