-- The tenant's active jobs, for a suspension to pause.
SELECT id FROM jobs WHERE tenant_id = $1 AND state = 'active' ORDER BY id
