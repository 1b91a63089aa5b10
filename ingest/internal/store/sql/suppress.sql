-- Suppresses an address for a tenant at the recipient's or the provider's
-- word (one-click unsubscribe, a bounce, a complaint), by the suppression
-- list's one rule (herald_suppress): a suppression the partner added takes
-- the recipient's reason, so the partner cannot lift it later; one that
-- came from the recipient keeps its reason. Repeating it changes nothing.
-- $1 tenant, $2 address, $3 reason.
SELECT herald_suppress($1, ARRAY[$2::text], ARRAY[$3::text])
