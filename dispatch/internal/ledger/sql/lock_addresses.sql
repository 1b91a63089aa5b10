-- Takes a shared lock per recipient address of a chunk, in key order (so
-- that no two workers can wait on each other), held from before the claim
-- until the provider's answers are recorded. A one-click unsubscribe waits
-- for the exclusive lock on the same key after committing its suppression,
-- so it returns only once no send to the address is under way.
SELECT count(pg_advisory_lock_shared(k))
FROM (
    SELECT DISTINCT hashtextextended($1 || '/' || lower(e), 0) AS k
    FROM unnest($2::text[]) AS e
    ORDER BY 1
) keys
