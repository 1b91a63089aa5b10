-- Gives a job's failed recipients another go: each ledger row the provider
-- refused for good (not a render failure: the same template version fails
-- the same way) becomes deferred again, its batch is marked not done and
-- unpublished (with its publish count reset, so a batch that went to a
-- dead-letter topic is published again too), and the failures leave the
-- job's counts. Dispatch then takes the rows back as it takes any deferred
-- row: suppression, deadline, quiet hours and the daily cap are checked
-- again before anything is sent.
-- $1 tenant, $2 job, $3 the job's submitted_at (the ledger's partition key).
WITH failed AS (
    UPDATE deliveries d
    SET state = 'deferred', reason = 're-driven after: ' || d.reason, done_at = NULL, not_before = NULL
    WHERE d.tenant_id = $1 AND d.job_id = $2 AND d.job_submitted_at = $3
      AND d.state = 'failed' AND d.reason NOT LIKE 'render: %'
    RETURNING d.batch_seq
), batches AS (
    UPDATE job_batches b
    SET done_at = NULL, published_at = NULL, publishes = 0
    WHERE b.tenant_id = $1 AND b.job_id = $2
      AND (b.seq IN (SELECT batch_seq FROM failed) OR b.done_at IS NULL)
    RETURNING b.seq
), counted AS (
    -- Readers sum the shards, so the lowest shard takes the whole change.
    UPDATE job_progress p
    SET failed = p.failed - (SELECT count(*) FROM failed)
    WHERE p.tenant_id = $1 AND p.job_id = $2
      AND p.shard = (SELECT min(shard) FROM job_progress WHERE tenant_id = $1 AND job_id = $2)
      AND EXISTS (SELECT 1 FROM failed)
)
SELECT (SELECT count(*) FROM failed), (SELECT count(*) FROM batches)
