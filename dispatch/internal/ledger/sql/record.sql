-- Records the provider's answers for rows this batch holds in sending, and
-- counts final ones toward the job's progress, in one statement. Each row is
-- found by one key lookup and updated by its tuple id (see Ledger.Lock on
-- why it is spelled out this way).
-- The answers come as parallel arrays: @customer_ids, @states, @reasons.
WITH input AS (
    SELECT * FROM unnest(@customer_ids::text[], @states::text[], @reasons::text[]) AS t(customer_id, state, reason)
), targets AS (
    SELECT x.tableoid AS part, x.ctid AS tid, i.state, i.reason
    FROM input i
    CROSS JOIN LATERAL (
        SELECT d.tableoid, d.ctid
        FROM deliveries d
        WHERE d.tenant_id = @tenant AND d.job_id = @job AND d.channel = @channel AND d.customer_id = i.customer_id
          AND d.job_submitted_at = @submitted_at AND d.batch_seq = @seq AND d.state = 'sending'
        LIMIT 1
    ) x
), recorded AS (
    UPDATE deliveries d
    SET state = t.state,
        reason = t.reason,
        done_at = CASE WHEN t.state <> 'deferred' THEN now() END
    FROM targets t
    WHERE d.tableoid = t.part AND d.ctid = t.tid AND d.state = 'sending'
    RETURNING d.state
)
INSERT INTO job_progress AS p (tenant_id, job_id, shard, sent, failed, ambiguous, first_sent_at, last_done_at)
SELECT @tenant, @job, @shard,
       count(*) FILTER (WHERE state = 'sent'),
       count(*) FILTER (WHERE state = 'failed'),
       count(*) FILTER (WHERE state = 'ambiguous'),
       CASE WHEN count(*) FILTER (WHERE state = 'sent') > 0 THEN now() END,
       now()
FROM recorded
HAVING count(*) FILTER (WHERE state <> 'deferred') > 0
ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
    sent = p.sent + excluded.sent,
    failed = p.failed + excluded.failed,
    ambiguous = p.ambiguous + excluded.ambiguous,
    first_sent_at = least(p.first_sent_at, excluded.first_sent_at),
    last_done_at = greatest(p.last_done_at, excluded.last_done_at)
