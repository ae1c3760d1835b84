"""A call's cost before it runs, from LiteLLM's own cost map (docs/leases.md#the-gateway,
"The estimate").

Input: `litellm.token_counter` on everything the request sends the model (`input_messages`: the
messages; the `system` prompt of Anthropic's `/v1/messages`; the `input` and `instructions` of
OpenAI's `/v1/responses`, as text; the tools), at the model's input price. Output:
the *expected* output, not `max_tokens` blindly: the largest completion among the last
`RECENT_CALLS` calls of the model at this gateway, never above the request's `max_tokens`;
before the first call of a model, `max_tokens` if set, else `first_output_tokens`. A model
LiteLLM cannot price (or messages it cannot count) reserves `unpriced_reserve`.

`litellm.cost_per_token` returns the two parts as floats; they are added as LiteLLM adds them
for a call's `response_cost` and the sum turned into the Decimal it prints as
(`cost_from_float`), so a call whose tokens match its estimate settles exactly at its estimate.
"""

import json
import logging
import threading
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import litellm

from spendpipe.contracts.money import cost_from_float

log = logging.getLogger(__name__)

RECENT_CALLS = 20


class CallEstimator:
    def __init__(self, *, first_output_tokens: int, unpriced_reserve: Decimal) -> None:
        self._first_output = first_output_tokens
        self._unpriced = unpriced_reserve
        self._recent: dict[str, deque[int]] = {}
        self._lock = threading.Lock()
        self.learned = 0
        """Grows whenever a model's expected output changes: estimates made before may differ."""

    def estimate(self, model: str, request: Mapping[str, Any]) -> Decimal:
        """The cost to reserve for a call of `model` with these arguments (`messages`,
        `max_tokens` / `max_completion_tokens`)."""
        try:
            tools = request.get("tools")
            prompt = litellm.token_counter(
                model=model, messages=input_messages(request), tools=tools if isinstance(tools, list) else None
            )
            prompt_cost, output_cost = litellm.cost_per_token(
                model=model, prompt_tokens=prompt, completion_tokens=self.expected_output(model, request)
            )
            return cost_from_float(prompt_cost + output_cost)
        except Exception as error:  # LiteLLM raises many kinds for a model it does not know
            log.debug("spendpipe: no estimate for model %r (%r): reserving %s", model, error, self._unpriced)
            return self._unpriced

    def expected_output(self, model: str, request: Mapping[str, Any]) -> int:
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or request.get("max_output_tokens")
        limit = limit if isinstance(limit, int) and limit > 0 else None
        with self._lock:
            recent = self._recent.get(model)
            seen = max(recent) if recent else None
        if seen is None:
            return limit if limit is not None else self._first_output
        return min(seen, limit) if limit is not None else seen

    def observe(self, model: str, completion_tokens: int) -> None:
        """A finished call's output: what the next calls of the model expect."""
        with self._lock:
            recent = self._recent.setdefault(model, deque(maxlen=RECENT_CALLS))
            before = max(recent) if recent else None
            recent.append(completion_tokens)
            if max(recent) != before:
                self.learned += 1


def input_messages(request: Mapping[str, Any]) -> list[Any]:
    """What a request sends the model, as messages to count: a client that puts its prompt
    where only `messages` was counted (a Responses API `input`, an Anthropic `system`) must not
    reserve a hundredth of its cost. A value that is not text is counted as its JSON."""
    messages = request.get("messages")
    counted = list(messages) if isinstance(messages, list) else []
    for field, role in (("system", "system"), ("instructions", "system"), ("input", "user")):
        value = request.get(field)
        if value:
            # JSON nested past Python's stack raises here: the call reserves `unpriced_reserve`
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            counted.append({"role": role, "content": text})
    return counted
