-- Adds the staged addresses to the tenant's suppression list; an address
-- already suppressed keeps its first reason and date.
INSERT INTO suppressions (tenant_id, email, reason)
SELECT DISTINCT ON (email) $1, email, reason
FROM staged_suppressions
ORDER BY email, line DESC
ON CONFLICT (tenant_id, email) DO NOTHING
