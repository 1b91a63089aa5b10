-- Sets a batch aside while only retries are left in it, with the time to
-- publish it again if it holds recipients for their quiet hours ($4), and
-- wakes the releaser (herald_park_batch: the batch is ingest's).
-- $1 tenant, $2 job, $3 batch seq, $4 resume at or NULL.
SELECT herald_park_batch($1, $2, $3, $4)
