UPDATE jobs SET state = $3, state_changed_at = now() WHERE tenant_id = $1 AND id = $2
