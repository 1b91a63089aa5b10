-- On resume, every batch of the job without a final outcome for all its
-- recipients is marked unpublished, so that the planner publishes it again:
-- dispatch acked the batches of the paused job without claiming anyone, and
-- the ledger makes a copy of a batch that was partly claimed harmless.
UPDATE job_batches SET published_at = NULL
WHERE tenant_id = $1 AND job_id = $2 AND done_at IS NULL AND published_at IS NOT NULL
