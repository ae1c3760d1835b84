-- Fencing of aggregators: several aggregators may share a consumer group and a store.
-- When the group assigns a partition of spend.events to an aggregator, it claims it here with
-- an owner epoch: the group's generation at that assignment, which the coordinator raises at
-- every rebalance. Every insert that counts (totals with their watermark rows, events) checks
-- in the same statement that its writer's epoch is still the highest claim of each partition
-- it writes, so a writer whose partitions moved on writes nothing (docs/exactly-once.md,
-- "Several aggregators"). An owner that gives a partition back after its last flush ended adds a
-- row with `released`: the next owner then need not wait for its statements to land. A few rows
-- per partition and rebalance.
CREATE TABLE IF NOT EXISTS partition_owners
(
    consumer_group  String,
    topic           String,
    kafka_partition UInt32,
    epoch           UInt64,
    owner           String,
    released        Bool DEFAULT false,
    claimed_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (consumer_group, topic, kafka_partition, epoch);
