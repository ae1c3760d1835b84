-- Token sums that cannot overflow. An event reports at most 10^9 tokens of a kind
-- (`MAX_TOKENS` in the contract); a window of one scope can take billions of events, so a
-- month of the global scope at 100k events/s could pass UInt64's 1.8 * 10^19. UInt128 cannot
-- be reached (3.4 * 10^38). Requests, failures and cache hits add at most 1 per event and stay
-- UInt64. Re-running a MODIFY COLUMN to the type a column already has changes nothing.
ALTER TABLE spend_totals MODIFY COLUMN prompt_tokens SimpleAggregateFunction(sum, UInt128);
ALTER TABLE spend_totals MODIFY COLUMN completion_tokens SimpleAggregateFunction(sum, UInt128);
ALTER TABLE spend_totals MODIFY COLUMN total_tokens SimpleAggregateFunction(sum, UInt128);
