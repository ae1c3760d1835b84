"""The alert notifier: soft-budget alerts (spend.alerts) and verified block/unblock decisions
(spend.decisions) delivered to webhooks, at least once.

Records are read in a consumer group and an offset is committed only after the record's
notification reached every webhook (or the record was skipped on purpose: a decision that fails
verification, a tombstone, a record that does not parse). A webhook that fails is retried with
exponential backoff up to `max_backoff_s`, then at that interval for as long as it takes: the
notifier never drops a notification and never commits past one it did not deliver, so a crash
or a restart delivers it again. Receivers drop the repeats by the notification's idempotency
key (the `Idempotency-Key` header and `idempotency_key` in the JSON body).
"""
