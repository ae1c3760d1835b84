"""Charging each attempt of a call once.

When a provider's stream fails mid-way as its client hangs up (LiteLLM fails a stream that repeats
a chunk 100 times, a model caught in a loop), LiteLLM's proxy logs it twice: the failure, which
carries the cost of the chunks read so far, then the success that it dispatches for a stream its
client hung up on, for the same chunks. Both name the call and the attempt's start time; their
end times differ, so their event ids do too, and both were counted (measured: 0.00102 twice for
one stream). A later log of an attempt that was already charged at least its cost is not
published (`spendpipe_gateway_events_repeated_total`).

Router retries of one call keep its id and may share its start time (the proxy passes its own
logging object down), so the rule keeps every log that costs more than the attempt was charged:
a failed attempt charged nothing never hides the success after it. Only attempts charged more
than 0 are remembered, the latest `MOST_REMEMBERED`: the two logs of a hang-up come within
milliseconds. Only streams are looked at: nothing else is billed on a hang-up, and the check
(about 5 µs, most of it reading the cost) stays off every other call's request path.
"""

import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from spendpipe.gateway.recording.event_builder import charged_cost

MOST_REMEMBERED = 4096


class ChargedAttempts:
    """Thread-safe: LiteLLM logs on the proxy's event loop and on its own threads."""

    def __init__(self, most: int = MOST_REMEMBERED) -> None:
        self._most = most
        self._charged: OrderedDict[tuple[str, float], Decimal] = OrderedDict()
        self._lock = threading.Lock()

    def repeats(self, kwargs: Mapping[str, Any]) -> bool:
        """Whether the logged call `kwargs` (what LiteLLM hands a logger) is a stream's attempt
        already charged at least what it charges; else it is remembered as charged that. Calls
        that are not streams are never logged twice: they are let through at once."""
        record = kwargs.get("standard_logging_object")
        if kwargs.get("stream") is not True or not isinstance(record, Mapping):
            return False
        attempt = _attempt(record)
        cost = charged_cost(kwargs)
        if attempt is None or cost is None:
            return False
        with self._lock:
            charged = self._charged.get(attempt)
            if charged is not None and cost <= charged:
                return True
            if cost > 0:
                self._charged[attempt] = cost
                self._charged.move_to_end(attempt)
                while len(self._charged) > self._most:
                    self._charged.popitem(last=False)
        return False


def _attempt(record: Mapping[str, Any]) -> tuple[str, float] | None:
    call_id, start = record.get("litellm_call_id"), record.get("startTime")
    if not isinstance(call_id, str) or not call_id or not isinstance(start, int | float) or isinstance(start, bool):
        return None
    return call_id, float(start)
