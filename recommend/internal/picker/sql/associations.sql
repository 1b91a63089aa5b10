-- The related items of a batch's seed items, by kind of association.
-- $1 tenant, $2 kinds, $3 item ids (parallel arrays).
SELECT a.kind, a.item_id, a.related_ids, a.scores
FROM item_associations a
JOIN unnest($2::text[], $3::text[]) AS s(kind, item_id) ON a.kind = s.kind AND a.item_id = s.item_id
WHERE a.tenant_id = $1
