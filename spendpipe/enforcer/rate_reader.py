"""Reading what one (scope, model) was admitted in the sliding minute before `now`, across every
gateway, from the raw `events` table.

Not from the `spend_totals` minute rows: those are fixed windows, and a limit judged on them
would admit up to twice the limit across a minute boundary. One query per limit returns the
count, the tokens, and when the window will again admit a request: for `rpm_limit` R that is
60 s after the (count - R + 1)-th oldest request; for `tpm_limit` T, 60 s after the oldest
request whose leaving brings the tokens under T.

A request counts from when it started (`occurred_at - latency_ms`), as a gateway counts it at
admission; its tokens from when it ended (`occurred_at`), as a gateway counts them when the call
ends. So a call longer than the window still counts its tokens.

A request a gateway refused (a rate limit or a budget, in the pre-call hook) is logged as a
failed event too, but was never admitted: it does not count, or a client retrying while
limited would keep itself limited. Those events carry the gateway's own error classes
(`contracts/refusals.py`); a call that was admitted and failed later counts, whatever its error.
LiteLLM's `BudgetExceededError` is left out too: LiteLLM raises it before a call runs.
"""

from dataclasses import dataclass
from typing import Any

from spendpipe.contracts.rate_limits import TOKEN_COLUMNS, WINDOW_S, RateLimit
from spendpipe.contracts.refusals import REFUSAL_ERROR_CLASSES
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.platform.clickhouse import ClickhouseStore

_SCOPE_COLUMNS = {
    ScopeType.KEY: "key_hash",
    ScopeType.USER: "user_id",
    ScopeType.TEAM: "team_id",
    ScopeType.END_USER: "end_user",
    ScopeType.AGENT: "agent_id",
}

_NOT_ADMITTED = ", ".join(f"'{name}'" for name in (*REFUSAL_ERROR_CLASSES, "BudgetExceededError"))

# A call that started before the horizon but ended after it is read for its tokens only.
_QUERY = """
WITH arraySort(groupArrayIf(started, started > {{horizon:Int64}})) AS starts,
     arraySort(groupArray((ts, tokens))) AS log,
     length(starts) AS requests,
     arraySum(arrayMap(x -> x.2, log)) AS used
SELECT requests,
       used,
       if({{rpm:UInt64}} > 0 AND requests >= {{rpm:UInt64}}, starts[requests - {{rpm:UInt64}} + 1], 0),
       if({{tpm:UInt64}} > 0 AND used >= {{tpm:UInt64}},
          arrayFirst((x, c) -> used - c < {{tpm:UInt64}}, log, arrayCumSum(arrayMap(x -> x.2, log))).1, 0)
FROM (
    SELECT toUnixTimestamp64Micro(occurred_at) AS ts,
           ts - toInt64(latency_ms * 1000) AS started,
           toUInt64({tokens}) AS tokens
    FROM events
    WHERE {scope_column} = {{scope_id:String}}
      AND occurred_at > fromUnixTimestamp64Micro({{horizon:Int64}}, 'UTC')
      AND ({{model:String}} = '' OR billed_model = {{model:String}})
      AND NOT (status = 'failure' AND error_class IN ({not_admitted}))
)
"""


@dataclass(frozen=True)
class RateUsage:
    requests: int
    tokens: int
    requests_free_at: float | None
    """When the window admits a request again under `rpm_limit`; None if it does now."""
    tokens_free_at: float | None


class RateReader:
    def __init__(self, *, clickhouse: ClickhouseStore) -> None:
        self._clickhouse = clickhouse

    def measure(self, limit: RateLimit, now: float) -> RateUsage:
        scope = Scope.parse(limit.scope)
        sql = _QUERY.format(
            tokens=TOKEN_COLUMNS[limit.token_type], scope_column=_SCOPE_COLUMNS[scope.type], not_admitted=_NOT_ADMITTED
        )
        parameters: dict[str, Any] = {
            "rpm": limit.rpm or 0,
            "tpm": limit.tpm or 0,
            "scope_id": scope.id,
            "horizon": int((now - WINDOW_S) * 1_000_000),
            "model": limit.model,
        }
        requests, tokens, requests_at, tokens_at = self._clickhouse.rows(sql, parameters)[0]
        return RateUsage(int(requests), int(tokens), _expiry(requests_at), _expiry(tokens_at))


def _expiry(oldest_micros: int) -> float | None:
    return oldest_micros / 1_000_000 + WINDOW_S if oldest_micros else None
