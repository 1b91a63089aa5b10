-- Batches a crashed planner recorded but may not have published.
SELECT seq, customer_ids
FROM job_batches
WHERE tenant_id = $1 AND job_id = $2 AND published_at IS NULL
ORDER BY seq
