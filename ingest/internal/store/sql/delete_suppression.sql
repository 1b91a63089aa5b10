-- Removes a partner-added suppression. Returns the reason of the row found
-- (deleted only when the partner may lift it: not an unsubscribe or a
-- complaint, which came from the recipient).
WITH found AS (
    SELECT reason FROM suppressions WHERE tenant_id = $1 AND email = lower($2)
), gone AS (
    DELETE FROM suppressions
    WHERE tenant_id = $1 AND email = lower($2) AND reason NOT IN ('unsubscribed', 'complaint')
)
SELECT reason FROM found
