-- Batches published but not yet done, across all jobs: the pipeline's
-- backlog and the age of its oldest batch.
SELECT count(*), coalesce(extract(epoch FROM now() - min(published_at)), 0)::float8,
       count(*) FILTER (WHERE publishes > 1)
FROM job_batches
WHERE done_at IS NULL AND published_at IS NOT NULL
