-- Records one planned batch (run once per batch of a chunk, in the
-- checkpoint's transaction).
INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, job_id, seq) DO NOTHING
