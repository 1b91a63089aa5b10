-- Appends the staged events. Events are facts, not state: each line is one
-- occurrence, so nothing is merged.
INSERT INTO events (tenant_id, customer_id, kind, item_id, quantity, occurred_at)
SELECT $1, customer_id, kind, item_id, quantity, occurred_at
FROM staged_events
