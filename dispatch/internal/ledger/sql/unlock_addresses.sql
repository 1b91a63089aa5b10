SELECT count(pg_advisory_unlock_shared(k))
FROM (
    SELECT DISTINCT hashtextextended($1 || '/' || lower(e), 0) AS k
    FROM unnest($2::text[]) AS e
) keys
