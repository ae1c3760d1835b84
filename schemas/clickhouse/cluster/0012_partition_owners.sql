-- clickhouse/migrations/0012_partition_owners.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE TABLE IF NOT EXISTS partition_owners ON CLUSTER 'spendpipe'
(
    consumer_group  String,
    topic           String,
    kafka_partition UInt32,
    epoch           UInt64,
    owner           String,
    released        Bool DEFAULT false,
    claimed_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (consumer_group, topic, kafka_partition, epoch);
