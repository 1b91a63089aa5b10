-- One page of tenants in id order, after the cursor's id.
SELECT id, state, send_rate, daily_cap, providers, created_at, updated_at, state_changed_at
FROM tenants WHERE id > $1
ORDER BY id
LIMIT $2
