-- The right to erasure: the customer, their recommendations and events go,
-- and their address is scrubbed from finished rows of the delivery ledger
-- (herald_erase_delivery_addresses: the ledger keeps that a message was
-- sent, not to whom). A suppression of their address stays: it is what
-- keeps them from being mailed again.
WITH c AS (
    DELETE FROM customers WHERE tenant_id = $1 AND id = $2 RETURNING id
), r AS (
    DELETE FROM recommendations WHERE tenant_id = $1 AND customer_id = $2
), e AS (
    DELETE FROM events WHERE tenant_id = $1 AND customer_id = $2
), d AS (
    SELECT herald_erase_delivery_addresses($1, $2) AS scrubbed
)
-- d is the outer scan, so it runs whether or not the customer was found.
SELECT (SELECT count(*) FROM c) FROM d
