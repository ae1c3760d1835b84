-- Agent sessions: which agent made a call and which session it belongs to. Added at
-- the end of `events`, in the order the aggregator's Arrow stage carries them. No rollup per
-- agent or session: sessions are many and short-lived, and their caps are counted by the
-- gateways from the sessions topic; analysts group `events` by session_id.
ALTER TABLE events ADD COLUMN IF NOT EXISTS agent_id String;
ALTER TABLE events ADD COLUMN IF NOT EXISTS session_id String;
