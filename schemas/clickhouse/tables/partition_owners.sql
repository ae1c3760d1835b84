CREATE TABLE partition_owners
(
    `consumer_group` String,
    `topic` String,
    `kafka_partition` UInt32,
    `epoch` UInt64,
    `owner` String,
    `released` Bool DEFAULT false,
    `claimed_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (consumer_group, topic, kafka_partition, epoch)
SETTINGS index_granularity = 8192;
