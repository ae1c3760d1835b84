"""Each scope type's id as an expression on a row of `events` (or of the aggregator's stage,
which has the same columns): the rule of `contracts.scopes.scopes_of`, written once in SQL for
the aggregator's rollup and the enforcer's lease spend.

A scope type with one id per event is in `SCOPE_IDS` ('' where the event has none). Tags give an
event several ids: `ATTRIBUTED_TAGS` is the array `attributed_tags` keeps (distinct, in order,
no empty tag and no overflow marker, at most `MAX_TAGS`);
`tests/integration/test_rollup.py` holds the two rules together on generated tag lists.
"""

from spendpipe.contracts.scopes import MAX_TAGS, OVERFLOW_TAG, ScopeType

SCOPE_IDS: dict[ScopeType, str] = {
    ScopeType.GLOBAL: "''",
    ScopeType.KEY: "key_hash",
    ScopeType.USER: "user_id",
    ScopeType.TEAM: "team_id",
    ScopeType.TEAM_MEMBER: "if(team_id != '' AND user_id != '', concat(team_id, '/', user_id), '')",
    ScopeType.ORG: "org_id",
    ScopeType.END_USER: "end_user",
    ScopeType.PROVIDER: "provider",
}
"""The scope types with at most one id per event."""

_OVERFLOW = OVERFLOW_TAG.pattern.replace("\\", "\\\\")
ATTRIBUTED_TAGS = (
    f"arraySlice(arrayFilter((t, i) -> t != '' AND NOT match(t, '{_OVERFLOW}') AND indexOf(request_tags, t) = i, "
    f"request_tags, arrayEnumerate(request_tags)), 1, {MAX_TAGS})"
)
"""The tags whose scopes a row counts towards, as an `Array(String)`."""


def scope_matches(scope_type: ScopeType, parameter: str = "scope_id") -> str:
    """A condition on a row: it counts towards the scope of this type whose id is the query
    parameter `parameter`."""
    if scope_type is ScopeType.TAG:
        return f"has({ATTRIBUTED_TAGS}, {{{parameter}:String}})"
    return f"{SCOPE_IDS[scope_type]} = {{{parameter}:String}}"
