-- Whether a job may send: 'active', 'paused' or 'cancelled'.
SELECT state FROM jobs WHERE tenant_id = $1 AND id = $2
