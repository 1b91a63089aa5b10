-- Suppresses addresses the provider reported as hard bounces, so no later
-- job of the tenant mails them, by the suppression list's own rule
-- (herald_suppress: an address already listed keeps its reason).
-- $1 tenant, $2 addresses, $3 reasons.
SELECT herald_suppress($1, $2::text[], $3::text[])
