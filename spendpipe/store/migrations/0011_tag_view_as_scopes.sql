-- spend_by_tag counts a call under the tags its `tag` scope totals count it under:
-- each distinct tag once, no empty tag and no overflow marker (`<+N more>`), at most 32 per call
-- (the rule of `spendpipe.contracts.scopes.attributed_tags`; the expression is
-- `spendpipe.store.scope_sql.ATTRIBUTED_TAGS`, which tests/unit/test_scope_sql.py holds it to).
-- Before, a tag named twice counted twice and the marker counted as a tag. Safe to run again.
CREATE OR REPLACE VIEW spend_by_tag AS
SELECT
    arrayJoin(arraySlice(arrayFilter((t, i) -> t != '' AND NOT match(t, '^<\\+[0-9]+ more>$') AND indexOf(request_tags, t) = i, request_tags, arrayEnumerate(request_tags)), 1, 32)) AS tag,
    toStartOfHour(occurred_at) AS hour,
    sum(toDecimal256(cost, 24)) AS spend,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(toUInt128(prompt_tokens)) AS prompt_tokens,
    sum(toUInt128(completion_tokens)) AS completion_tokens,
    sum(toUInt128(total_tokens)) AS total_tokens
FROM events
GROUP BY tag, hour;
