-- Spend sums that cannot overflow. ClickHouse sums Decimal(38, 24) in its own type
-- and wraps past about 1.7 * 10^14 without an error: a window of one scope (the global month)
-- could reach that with 1.7 * 10^8 events at the $10^6 an event may cost, and a wrapped total
-- is negative, which would lift every block. Decimal(76, 24) holds 52 integer digits, beyond any
-- number of events. Costs in `events` stay Decimal(38, 24): one event is at most $10^6, and a
-- flush (at most 10^5 events) sums them far inside it before the rollup widens the sum.
ALTER TABLE spend_totals MODIFY COLUMN spend SimpleAggregateFunction(sum, Decimal(76, 24));
