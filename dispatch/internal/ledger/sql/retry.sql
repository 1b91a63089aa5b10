-- Takes back the rows of this batch that were deferred on an earlier
-- attempt, deciding each again as the claim would: suppressed if the
-- address was suppressed since (an unsubscribe while it waited), expired
-- once past the deadline, otherwise sending again — for the provider now
-- chosen, since the last one accepted nothing. Nothing moves while the job
-- is not active.
-- $1 tenant, $2 job, $3 channel, $4 job submitted_at, $5 batch seq,
-- $6 deadline, $7 progress shard, $8 customer ids, $9 provider.
WITH targets AS (
    SELECT x.tableoid AS part, x.ctid AS tid,
           CASE
               WHEN s.email IS NOT NULL THEN 'suppressed'
               WHEN now() > $6 THEN 'expired'
               ELSE 'sending'
           END AS state,
           CASE
               WHEN s.email IS NOT NULL THEN s.reason
               WHEN now() > $6 THEN 'deadline passed while deferred: ' || x.reason
               ELSE x.reason
           END AS reason
    FROM unnest($8::text[]) AS i(customer_id)
    CROSS JOIN LATERAL (
        SELECT d.tableoid, d.ctid, d.email, d.reason
        FROM deliveries d
        WHERE d.tenant_id = $1 AND d.job_id = $2 AND d.channel = $3 AND d.customer_id = i.customer_id
          AND d.job_submitted_at = $4 AND d.batch_seq = $5 AND d.state = 'deferred'
        LIMIT 1
    ) x
    LEFT JOIN suppressions s ON s.tenant_id = $1 AND s.email = lower(x.email)
    WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = $1 AND j.id = $2 AND j.state = 'active')
), retried AS (
    UPDATE deliveries d
    SET state = t.state,
        attempts = d.attempts + CASE WHEN t.state = 'sending' THEN 1 ELSE 0 END,
        reason = t.reason,
        done_at = CASE WHEN t.state <> 'sending' THEN now() END,
        provider = CASE WHEN t.state = 'sending' THEN $9 ELSE d.provider END
    FROM targets t
    WHERE d.tableoid = t.part AND d.ctid = t.tid AND d.state = 'deferred'
    RETURNING d.customer_id, d.state
), counted AS (
    INSERT INTO job_progress AS p (tenant_id, job_id, shard, suppressed, expired, last_done_at)
    SELECT $1, $2, $7,
           count(*) FILTER (WHERE state = 'suppressed'),
           count(*) FILTER (WHERE state = 'expired'),
           now()
    FROM retried
    HAVING count(*) FILTER (WHERE state <> 'sending') > 0
    ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
        suppressed = p.suppressed + excluded.suppressed,
        expired = p.expired + excluded.expired,
        last_done_at = greatest(p.last_done_at, excluded.last_done_at)
)
SELECT customer_id, state FROM retried
