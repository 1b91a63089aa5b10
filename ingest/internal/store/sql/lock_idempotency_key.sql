-- Holds a tenant's Idempotency-Key for the rest of the transaction; false
-- means another request with the same key is being handled right now.
SELECT pg_try_advisory_xact_lock(hashtextextended('job-key/' || $1 || '/' || $2, 0))
