-- Marks a planned batch done once every recipient in it has a final ledger
-- row, and wakes the releaser (herald_finish_batch: the batch is ingest's).
-- $1 tenant, $2 job, $3 channel, $4 job submitted_at, $5 batch seq.
SELECT herald_finish_batch($1, $2, $3, $4, $5)
