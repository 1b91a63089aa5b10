-- The latest back-in-stock and price-drop changes of the items a batch's
-- customers showed interest in, since $3.
-- $1 tenant, $2 item ids, $3 since, $4 kinds.
SELECT DISTINCT ON (item_id, kind) item_id, kind, old_price_cents, new_price_cents, changed_at
FROM catalog_changes
WHERE tenant_id = $1 AND item_id = ANY($2::text[]) AND kind = ANY($4::text[]) AND changed_at >= $3
ORDER BY item_id, kind, changed_at DESC
