-- Notes that Pub/Sub has these batches.
UPDATE job_batches
SET published_at = now(), publishes = publishes + 1, parked_at = NULL, resume_at = NULL
WHERE tenant_id = $1 AND job_id = $2 AND seq = ANY($3::bigint[])
