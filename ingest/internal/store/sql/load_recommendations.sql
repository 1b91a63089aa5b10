-- Replaces each staged customer's ranked list; the last line for a customer wins.
INSERT INTO recommendations (tenant_id, customer_id, item_ids, scores, model_version, updated_at)
SELECT DISTINCT ON (customer_id) $1, customer_id, item_ids, scores, model_version, now()
FROM staged_recommendations
ORDER BY customer_id, line DESC
ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
    item_ids = excluded.item_ids,
    scores = excluded.scores,
    model_version = excluded.model_version,
    updated_at = excluded.updated_at
