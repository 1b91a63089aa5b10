-- Holds a tenant's idempotency key of an origin for the rest of the
-- transaction; false means another request with the same key is being
-- handled right now. A partner's key is held under the name it always had,
-- so that replicas of every version agree on it.
SELECT pg_try_advisory_xact_lock(hashtextextended(
    CASE WHEN $3 = 'partner' THEN 'job-key/' ELSE 'job-key/' || $3 || '/' END || $1 || '/' || $2, 0))
