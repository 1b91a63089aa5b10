-- Claims a chunk of one batch's recipients in the ledger, in one statement:
-- each recipient without a row gets one, decided here and now: failed (it
-- did not render), suppressed (re-checked against the suppression list at
-- this very moment), expired (past the job's deadline) or sending (claimed:
-- the caller may now call the provider). Rows that already exist are left
-- alone (the unique key makes a second claim impossible) and, if this
-- batch owns them, returned with fresh = false so the caller can finish
-- what an earlier attempt started. Final outcomes count toward the job's
-- progress in the same statement.
--
-- $1 tenant, $2 job, $3 channel, $4 job submitted_at, $5 batch seq,
-- $6 deadline, $7 progress shard, $8.. parallel arrays of the chunk.
WITH input AS (
    SELECT *
    FROM unnest($8::text[], $9::text[], $10::text[], $11::text[]) AS t(customer_id, email, message_id, render_error)
), decided AS (
    SELECT i.customer_id, i.email, i.message_id,
           CASE
               WHEN i.render_error <> '' THEN 'failed'
               WHEN s.email IS NOT NULL THEN 'suppressed'
               WHEN now() > $6 THEN 'expired'
               ELSE 'sending'
           END AS state,
           CASE
               WHEN i.render_error <> '' THEN 'render: ' || i.render_error
               WHEN s.email IS NOT NULL THEN s.reason
               WHEN now() > $6 THEN 'deadline passed before sending'
               ELSE ''
           END AS reason
    FROM input i
    LEFT JOIN suppressions s ON s.tenant_id = $1 AND s.email = lower(i.email)
), claimed AS (
    INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq,
                            state, email, message_id, attempts, reason, done_at)
    SELECT $1, $2, $3, d.customer_id, $4, $5, d.state, d.email, d.message_id,
           CASE WHEN d.state = 'sending' THEN 1 ELSE 0 END, d.reason,
           CASE WHEN d.state <> 'sending' THEN now() END
    FROM decided d
    ON CONFLICT DO NOTHING
    RETURNING customer_id, state
), counted AS (
    INSERT INTO job_progress AS p (tenant_id, job_id, shard, failed, suppressed, expired, last_done_at)
    SELECT $1, $2, $7,
           count(*) FILTER (WHERE state = 'failed'),
           count(*) FILTER (WHERE state = 'suppressed'),
           count(*) FILTER (WHERE state = 'expired'),
           now()
    FROM claimed
    HAVING count(*) FILTER (WHERE state <> 'sending') > 0
    ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
        failed = p.failed + excluded.failed,
        suppressed = p.suppressed + excluded.suppressed,
        expired = p.expired + excluded.expired,
        last_done_at = greatest(p.last_done_at, excluded.last_done_at)
)
SELECT customer_id, state, true AS fresh FROM claimed
UNION ALL
SELECT d.customer_id, d.state, false
FROM deliveries d
WHERE d.tenant_id = $1 AND d.job_id = $2 AND d.channel = $3 AND d.job_submitted_at = $4
  AND d.customer_id = ANY($8::text[]) AND d.batch_seq = $5
