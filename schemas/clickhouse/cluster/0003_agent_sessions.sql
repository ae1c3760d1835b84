-- clickhouse/migrations/0003_agent_sessions.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
ALTER TABLE events ON CLUSTER 'spendpipe' ADD COLUMN IF NOT EXISTS agent_id String;

ALTER TABLE events ON CLUSTER 'spendpipe' ADD COLUMN IF NOT EXISTS session_id String;
