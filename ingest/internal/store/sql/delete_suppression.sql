-- Removes a partner-added suppression. Returns the row found and whether it
-- is the recipient's (an unsubscribe or a complaint, which the partner may
-- not lift: then it stays).
WITH found AS (
    SELECT reason, herald_recipient_suppression(reason) AS protected
    FROM suppressions WHERE tenant_id = $1 AND email = lower($2)
), gone AS (
    DELETE FROM suppressions
    WHERE tenant_id = $1 AND email = lower($2) AND NOT herald_recipient_suppression(reason)
)
SELECT protected FROM found
