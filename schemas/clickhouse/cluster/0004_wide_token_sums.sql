-- clickhouse/migrations/0004_wide_token_sums.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
ALTER TABLE spend_totals ON CLUSTER 'spendpipe' MODIFY COLUMN prompt_tokens SimpleAggregateFunction(sum, UInt128);

ALTER TABLE spend_totals ON CLUSTER 'spendpipe' MODIFY COLUMN completion_tokens SimpleAggregateFunction(sum, UInt128);

ALTER TABLE spend_totals ON CLUSTER 'spendpipe' MODIFY COLUMN total_tokens SimpleAggregateFunction(sum, UInt128);
