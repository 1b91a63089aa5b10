-- The partner's ranked lists of one batch's customers, with the model
-- version that produced each.
SELECT customer_id, item_ids, model_version
FROM recommendations
WHERE tenant_id = $1 AND customer_id = ANY($2::text[])
