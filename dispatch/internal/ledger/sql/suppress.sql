-- Suppresses addresses the provider reported as hard bounces, so no later
-- job of the tenant mails them.
INSERT INTO suppressions (tenant_id, email, reason)
SELECT $1, lower(e.email), e.reason
FROM unnest($2::text[], $3::text[]) AS e(email, reason)
ON CONFLICT (tenant_id, email) DO NOTHING
