-- Published batches, not yet done, of jobs that have made no progress for
-- $1 seconds: their messages were lost or dead-lettered. A job that is
-- merely queued behind others keeps finishing batches and is left alone, and
-- so is a paused or cancelled job (resume publishes a paused job's batches).
-- A batch is published again at that interval until it has been published
-- $3 times, then at doubling intervals, and once as soon as its job's
-- deadline has passed: dispatch then records what is left of it as expired,
-- so the job completes instead of waiting forever with recipients deferred.
SELECT b.tenant_id, b.job_id, b.seq, b.customer_ids, b.publishes
FROM job_batches b
JOIN jobs j ON j.tenant_id = b.tenant_id AND j.id = b.job_id AND j.state = 'active'
WHERE b.done_at IS NULL
  AND b.published_at < now() - make_interval(secs => $1)
  AND (b.publishes < $3
       OR b.published_at < now() - make_interval(secs => $1 * 2 ^ least(b.publishes - $3 + 1, 20))
       OR (b.published_at < j.deadline AND j.deadline < now()))
  AND b.resume_at IS NULL -- held for quiet hours: the releaser resumes it
  AND NOT EXISTS (
      SELECT 1 FROM job_progress p
      WHERE p.tenant_id = b.tenant_id AND p.job_id = b.job_id
        AND p.last_done_at >= now() - make_interval(secs => $1))
ORDER BY b.published_at
LIMIT $2
FOR UPDATE OF b SKIP LOCKED
