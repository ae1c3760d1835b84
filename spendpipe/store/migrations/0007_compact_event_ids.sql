-- Event ids as 16-byte UUIDs: an id was 36 bytes of text, about 68% of what an event
-- took on disk. The contract now says an id is a lowercase UUID, which every gateway writes. An
-- id stored before that was not a UUID is replaced by the UUID of its SipHash-128, so it stays
-- distinct. Both statements are safe to run again (the second time the column is a UUID already
-- and no row matches).
ALTER TABLE events UPDATE event_id = toString(reinterpretAsUUID(sipHash128(toString(event_id))))
WHERE toUUIDOrNull(toString(event_id)) IS NULL SETTINGS mutations_sync = 2;
ALTER TABLE events MODIFY COLUMN event_id UUID SETTINGS mutations_sync = 2;
