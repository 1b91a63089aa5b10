-- Takes back into sending the rows of this batch that the provider
-- deferred on an earlier attempt, or expires them once past the deadline.
-- $1 tenant, $2 job, $3 channel, $4 job submitted_at, $5 batch seq,
-- $6 deadline, $7 progress shard, $8 customer ids, $9 the provider they go
-- to now (nothing was accepted by the last one, so any may take them).
WITH targets AS (
    SELECT x.tableoid AS part, x.ctid AS tid
    FROM unnest($8::text[]) AS i(customer_id)
    CROSS JOIN LATERAL (
        SELECT d.tableoid, d.ctid
        FROM deliveries d
        WHERE d.tenant_id = $1 AND d.job_id = $2 AND d.channel = $3 AND d.customer_id = i.customer_id
          AND d.job_submitted_at = $4 AND d.batch_seq = $5 AND d.state = 'deferred'
        LIMIT 1
    ) x
), retried AS (
    UPDATE deliveries d
    SET state = CASE WHEN now() > $6 THEN 'expired' ELSE 'sending' END,
        attempts = d.attempts + CASE WHEN now() > $6 THEN 0 ELSE 1 END,
        reason = CASE WHEN now() > $6 THEN 'deadline passed while deferred: ' || d.reason ELSE d.reason END,
        done_at = CASE WHEN now() > $6 THEN now() END,
        provider = $9
    FROM targets t
    WHERE d.tableoid = t.part AND d.ctid = t.tid AND d.state = 'deferred'
    RETURNING d.customer_id, d.state
), counted AS (
    INSERT INTO job_progress AS p (tenant_id, job_id, shard, expired, last_done_at)
    SELECT $1, $2, $7, count(*), now()
    FROM retried
    WHERE state = 'expired'
    HAVING count(*) > 0
    ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
        expired = p.expired + excluded.expired,
        last_done_at = greatest(p.last_done_at, excluded.last_done_at)
)
SELECT customer_id, state FROM retried
