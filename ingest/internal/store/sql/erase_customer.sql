-- The right to erasure: the customer, their recommendations and events go,
-- and their address is scrubbed from finished rows of the delivery ledger
-- (the ledger keeps that a message was sent, not to whom). A suppression
-- of their address stays: it is what keeps them from being mailed again.
WITH c AS (
    DELETE FROM customers WHERE tenant_id = $1 AND id = $2 RETURNING id
), r AS (
    DELETE FROM recommendations WHERE tenant_id = $1 AND customer_id = $2
), e AS (
    DELETE FROM events WHERE tenant_id = $1 AND customer_id = $2
), d AS (
    UPDATE deliveries SET email = ''
    WHERE tenant_id = $1 AND customer_id = $2 AND done_at IS NOT NULL AND email <> ''
)
SELECT count(*) FROM c
