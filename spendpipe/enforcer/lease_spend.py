"""What the pipeline has counted of each lease chain's spend: the chain's gateway's events on the
chain's target that ended from the chain's start until the start of that gateway's next chain on
the target, from the raw `events` table (the totals carry no gateway).

Read from the same exact events as the window totals, so a chain's spend is in `outstanding`
(granted, not yet counted) or in the totals, never in both (docs/leases.md). Each event counts
for one chain at most: a call of an older chain that ends after the next one began counts for
the next one (the desk carries the older chain's remainder over to it, `leases.py`). One query
for every chain of a target: each chain is a (gateway, start, end) triple.

Which events count towards the scope is `store.scope_sql`'s rule, the one the aggregator's rollup
uses (a team member is `<team>/<user>`, a tag matches any of an event's attributed tags, the
global scope matches every event).
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from spendpipe.enforcer.targets import Target
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.scope_sql import scope_matches

_QUERY = """
SELECT idx, sum(cost)
FROM (
    SELECT cost, arrayJoin(arrayFilter(
        i -> {{gateways:Array(String)}}[i] = gateway_id
             AND occurred_at >= fromUnixTimestamp64Micro({{starts:Array(Int64)}}[i], 'UTC')
             AND occurred_at < fromUnixTimestamp64Micro({{ends:Array(Int64)}}[i], 'UTC'),
        arrayEnumerate({{gateways:Array(String)}}))) AS idx
    FROM events
    WHERE {scope_matches}
      AND ({{model:String}} = '' OR billed_model = {{model:String}})
      AND occurred_at >= fromUnixTimestamp64Micro({{earliest:Int64}}, 'UTC')
      AND gateway_id IN {{gateways:Array(String)}}
)
GROUP BY idx
"""


OPEN_END = 4_102_444_800 * 1_000_000
"""2100-01-01 in Unix microseconds: the end of a chain that has no successor."""


class ChainSpend:
    def __init__(self, *, clickhouse: ClickhouseStore) -> None:
        self._clickhouse = clickhouse

    def counted(self, target: Target, chains: Sequence[tuple[str, float, float | None]]) -> list[Decimal]:
        """For each (gateway id, start, end in Unix seconds; end None: open): the cost of that
        gateway's events on the target that occurred from the start until the end, in the order
        given."""
        if not chains:
            return []
        starts = [int(start * 1_000_000) for _, start, _ in chains]
        ends = [OPEN_END if end is None else int(end * 1_000_000) for _, _, end in chains]
        parameters: dict[str, Any] = {
            "scope_id": target.scope.id,
            "model": target.model,
            "earliest": min(starts),
            "gateways": [gateway for gateway, _, _ in chains],
            "starts": starts,
            "ends": ends,
        }
        sql = _QUERY.format(scope_matches=scope_matches(target.scope.type))
        spent = [Decimal(0)] * len(chains)
        for index, total in self._clickhouse.rows(sql, parameters):
            spent[int(index) - 1] = Decimal(total)
        return spent
