-- Sets the tenant's state, holding its row until the transaction ends, so
-- that a job created or resumed meanwhile (lock_tenant.sql) waits and then
-- sees the new state.
UPDATE tenants
SET state = $2, state_changed_at = CASE WHEN state = $2 THEN state_changed_at ELSE now() END
WHERE id = $1
RETURNING id, state, send_rate, daily_cap, providers, created_at, updated_at, state_changed_at
