-- Recorded batches to publish now, earliest deadline first, while the
-- pipeline holds fewer than $1 batches in flight and each job fewer than
-- $2: the window keeps Pub/Sub's queues short, so a job submitted during a
-- large one starts within seconds, and the per-job cap leaves it room.
-- Batches dispatch parked (only retries left in them) do not count; a parked
-- batch holding recipients for their quiet hours is published again once
-- its resume time comes.
WITH inflight AS (
    SELECT b.tenant_id, b.job_id, count(*) AS n
    FROM job_batches b
    JOIN jobs j ON j.tenant_id = b.tenant_id AND j.id = b.job_id AND j.state = 'active'
    WHERE b.done_at IS NULL AND b.published_at IS NOT NULL AND b.parked_at IS NULL
    GROUP BY b.tenant_id, b.job_id
), free AS (
    SELECT greatest($1 - coalesce(sum(n), 0), 0)::bigint AS slots FROM inflight
), candidates AS (
    SELECT b.tenant_id, b.job_id, b.seq, b.customer_ids, b.publishes, j.deadline,
           row_number() OVER (PARTITION BY b.tenant_id, b.job_id ORDER BY b.seq) AS k,
           coalesce(f.n, 0) AS running
    FROM job_batches b
    JOIN jobs j ON j.tenant_id = b.tenant_id AND j.id = b.job_id AND j.state = 'active'
    LEFT JOIN inflight f ON f.tenant_id = b.tenant_id AND f.job_id = b.job_id
    WHERE b.done_at IS NULL AND (b.published_at IS NULL OR b.resume_at <= now())
)
SELECT c.tenant_id, c.job_id, c.seq, c.customer_ids, c.publishes
FROM candidates c
WHERE c.running + c.k <= $2
ORDER BY c.deadline, c.tenant_id, c.job_id, c.seq
LIMIT (SELECT slots FROM free)
