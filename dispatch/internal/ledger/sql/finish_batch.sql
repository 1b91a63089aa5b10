-- Marks a planned batch done once every recipient in it has a final ledger
-- row, and wakes the releaser (herald_finish_batch: the batch is ingest's).
SELECT herald_finish_batch(@tenant, @job, @channel, @submitted_at, @seq)
