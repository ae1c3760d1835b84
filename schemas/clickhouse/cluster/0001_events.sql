-- clickhouse/migrations/0001_events.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE TABLE IF NOT EXISTS events ON CLUSTER 'spendpipe'
(
    event_id          String,
    occurred_at       DateTime64(6, 'UTC'),
    ingested_at       DateTime64(3, 'UTC'),
    key_hash          String,
    key_alias         String,
    user_id           String,
    team_id           String,
    org_id            String,
    end_user          String,
    model             LowCardinality(String),
    model_group       LowCardinality(String),
    billed_model      LowCardinality(String),
    provider          LowCardinality(String),
    call_type         LowCardinality(String),
    prompt_tokens     UInt64,
    completion_tokens UInt64,
    total_tokens      UInt64,
    cost              Decimal(38, 24),
    cache_hit         Bool,
    status            LowCardinality(String),
    error_class       String,
    latency_ms        Float64,
    request_tags      Array(String),
    gateway_id        LowCardinality(String),
    schema_version    UInt8,
    kafka_topic       LowCardinality(String),
    kafka_partition   UInt32,
    kafka_offset      Int64,
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(ingested_at)
ORDER BY (toStartOfHour(occurred_at), team_id, key_hash, occurred_at);
