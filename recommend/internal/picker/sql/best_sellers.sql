-- The tenant's items by units bought since $2, best first.
SELECT item_id
FROM events
WHERE tenant_id = $1 AND kind = 'purchase' AND occurred_at >= $2
GROUP BY item_id
ORDER BY sum(quantity) DESC, item_id
LIMIT $3
