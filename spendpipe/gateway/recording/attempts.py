"""Charging a stream that fails as its client hangs up once.

When a provider's stream fails mid-way as its client hangs up (LiteLLM fails a stream that repeats
a chunk 100 times, a model caught in a loop), LiteLLM's proxy logs it twice: the failure, which
carries the cost of the chunks read so far, then the success that it dispatches for a stream its
client hung up on (its metadata says `client_disconnected`), for the same chunks. Both name the
call and its start time; their end times differ, so their event ids do too, and both were
counted (measured: 0.00102 twice for one stream). That hang-up success is not published when an
earlier log of the same call, start time and deployment was charged at least as much
(`spendpipe_gateway_events_repeated_total`).

Only that log is ever held back. LiteLLM logs a call's retries, fallbacks and tool rounds under
one call id and start time too, each with its own cost (a failed stream is charged what it
streamed): none of them is a hang-up's success, so each is published. Only streams are looked
at, and only their logs charged more than 0 are remembered, the latest `MOST_REMEMBERED` (the
two logs of a hang-up come within milliseconds); other calls do not pay the check (about 5 µs,
most of it reading the cost) on their request path.
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
        self._charged: OrderedDict[tuple[str, float], tuple[Decimal, object]] = OrderedDict()
        """(call id, start time) -> the cost its latest log charged, and that log's deployment"""
        self._lock = threading.Lock()

    def repeats(self, kwargs: Mapping[str, Any]) -> bool:
        """Whether the logged call `kwargs` (what LiteLLM hands a logger) is the success LiteLLM
        logs for a stream its client hung up on, after a log of the same call, start time and
        deployment that charged at least as much; else a stream's log is remembered."""
        record = kwargs.get("standard_logging_object")
        if kwargs.get("stream") is not True or not isinstance(record, Mapping):
            return False
        attempt = _attempt(record)
        cost = charged_cost(kwargs)
        if attempt is None or cost is None:
            return False
        deployment = record.get("model_id")
        with self._lock:
            earlier = self._charged.get(attempt)
            if earlier is not None and _hung_up(kwargs) and earlier[1] == deployment and cost <= earlier[0]:
                return True
            if cost > 0:
                self._charged[attempt] = (cost, deployment)
                self._charged.move_to_end(attempt)
                while len(self._charged) > self._most:
                    self._charged.popitem(last=False)
        return False


def _attempt(record: Mapping[str, Any]) -> tuple[str, float] | None:
    call_id, start = record.get("litellm_call_id"), record.get("startTime")
    if not isinstance(call_id, str) or not call_id or not isinstance(start, int | float) or isinstance(start, bool):
        return None
    return call_id, float(start)


def _hung_up(kwargs: Mapping[str, Any]) -> bool:
    """Whether LiteLLM's proxy marked the call's metadata as one whose client hung up."""
    params = kwargs.get("litellm_params")
    metadata = params.get("metadata") if isinstance(params, Mapping) else None
    return isinstance(metadata, Mapping) and metadata.get("client_disconnected") is True
