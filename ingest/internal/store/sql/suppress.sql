-- Suppresses an address for a tenant at the recipient's or the provider's
-- word (one-click unsubscribe, a bounce, a complaint). A suppression the
-- partner added takes the new reason, so the partner cannot lift it later;
-- one that came from the recipient keeps its reason. Repeating the request
-- changes nothing.
INSERT INTO suppressions AS s (tenant_id, email, reason) VALUES ($1, lower($2), $3)
ON CONFLICT (tenant_id, email) DO UPDATE SET reason = excluded.reason
WHERE s.reason NOT IN ('unsubscribed', 'complaint') AND excluded.reason IN ('unsubscribed', 'complaint')
