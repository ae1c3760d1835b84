-- clickhouse/migrations/0007_compact_event_ids.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
ALTER TABLE events ON CLUSTER 'spendpipe' UPDATE event_id = toString(reinterpretAsUUID(sipHash128(toString(event_id))))
WHERE toUUIDOrNull(toString(event_id)) IS NULL SETTINGS mutations_sync = 2;

ALTER TABLE events ON CLUSTER 'spendpipe' MODIFY COLUMN event_id UUID SETTINGS mutations_sync = 2;
