-- Gives a job's failed recipients another go: dispatch's ledger makes each
-- row the provider refused for good deferred again and takes it out of the
-- job's counts (herald_redrive_failed_deliveries); each batch holding one
-- is marked not done and unpublished (with its publish count reset, so a
-- batch that went to a dead-letter topic is published again too). Dispatch
-- then takes the rows back as it takes any deferred row: suppression,
-- deadline, quiet hours and the daily cap are checked again before anything
-- is sent.
-- $1 tenant, $2 job, $3 the job's submitted_at (the ledger's partition key).
WITH failed AS (
    SELECT seq FROM herald_redrive_failed_deliveries($1, $2, $3) AS f(seq)
), batches AS (
    UPDATE job_batches b
    SET done_at = NULL, published_at = NULL, publishes = 0
    WHERE b.tenant_id = $1 AND b.job_id = $2
      AND (b.seq IN (SELECT seq FROM failed) OR b.done_at IS NULL)
    RETURNING b.seq
)
SELECT (SELECT count(*) FROM failed), (SELECT count(*) FROM batches)
