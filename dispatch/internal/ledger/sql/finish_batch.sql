-- Marks a planned batch done once every recipient in it has a final ledger
-- row, whichever copy of whichever batch claimed it. A part of a batch that
-- render had to split finishes it only together with the other parts.
-- $1 tenant, $2 job, $3 channel, $4 job submitted_at, $5 batch seq.
WITH finished AS (
    UPDATE job_batches b
    SET done_at = now()
    WHERE b.tenant_id = $1 AND b.job_id = $2 AND b.seq = $5 AND b.done_at IS NULL
      AND NOT EXISTS (
          SELECT 1
          FROM unnest(b.customer_ids) AS c(id)
          -- One primary-key probe per recipient (a correlated scalar
          -- subquery, whatever the statistics say): a join here was planned
          -- against a fresh partition's stale statistics as a scan of the
          -- job's whole ledger per recipient, quadratic in the job's size.
          -- A recipient without a row is not final.
          WHERE coalesce((
              SELECT d.state FROM deliveries d
              WHERE d.tenant_id = $1 AND d.job_id = $2 AND d.channel = $3 AND d.job_submitted_at = $4
                AND d.customer_id = c.id), 'sending') IN ('sending', 'deferred'))
    RETURNING 1
)
-- Wake the releaser: the batch's slot in the window is free.
SELECT pg_notify('herald_batches', '') FROM finished LIMIT 1
