-- The ranked lists of one batch's customers.
SELECT customer_id, item_ids
FROM recommendations
WHERE tenant_id = $1 AND customer_id = ANY($2::text[])
