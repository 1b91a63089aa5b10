-- Waits until no dispatch worker is sending to this address: dispatch holds
-- a shared lock on the same key from before it claims a recipient until it
-- has recorded the provider's answer (see dispatch's Held.LockAddresses).
-- The lock is taken (in the inner query) and released at once: it only
-- waits.
SELECT pg_advisory_unlock(k)
FROM (
    SELECT k, pg_advisory_lock(k)
    FROM (SELECT hashtextextended($1 || '/' || lower($2), 0) AS k) key
) locked
