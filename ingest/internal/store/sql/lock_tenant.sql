-- The tenant's state, share-locked: a suspension (set_tenant_state.sql)
-- waits for this transaction, and this one for a suspension in progress.
SELECT state FROM tenants WHERE id = $1 FOR SHARE
