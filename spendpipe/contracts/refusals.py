"""How a gateway's own refusals show in `SpendEvent.error_class`.

LiteLLM logs a request that a pre-call hook refused as a failed call, with the class name of the
exception as its error class. The gateway raises subclasses of LiteLLM's proxy errors under these
names, so a refusal by spendpipe can be told apart from a call that was admitted and failed later
(both may be a `ProxyException` or a `ProxyRateLimitError`).
"""

RATE_LIMIT_REFUSAL = "SpendpipeRateLimitError"
"""A rate limit (this gateway's count, or an enforcer block) or an agent session cap."""
BUDGET_REFUSAL = "SpendpipeBudgetExceededError"
"""An enforcer budget block, or fail-closed before the block list is read."""
REQUEST_REFUSAL = "SpendpipeBadRequestError"
"""A request the gateway will not serve as sent (a provider its model's deployments do not use)."""
REFUSAL_ERROR_CLASSES = (RATE_LIMIT_REFUSAL, BUDGET_REFUSAL, REQUEST_REFUSAL)
