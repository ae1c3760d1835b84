-- clickhouse/migrations/0005_wide_spend_sums.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
ALTER TABLE spend_totals ON CLUSTER 'spendpipe' MODIFY COLUMN spend SimpleAggregateFunction(sum, Decimal(76, 24));
