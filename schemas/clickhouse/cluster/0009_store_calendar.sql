-- clickhouse/migrations/0009_store_calendar.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE TABLE IF NOT EXISTS store_calendar ON CLUSTER 'spendpipe'
(
    timezone    String,
    week_start  LowCardinality(String),
    recorded_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY recorded_at;
