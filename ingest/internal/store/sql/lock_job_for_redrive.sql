-- A job's state, submission time and deadline, locked for a re-drive.
SELECT state, submitted_at, deadline FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE
