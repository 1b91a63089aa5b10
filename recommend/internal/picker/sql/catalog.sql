-- The in-stock catalog items among $2 (at any price), plus the tenant's $4
-- best sellers at or above the price floor $3 by the sales the partner
-- reports (rank > 0, best first). Both sets are looked up by key, never by
-- scanning the catalog.
WITH best AS (
    SELECT id, row_number() OVER (ORDER BY sales_30d DESC, id) AS rank
    FROM (
        SELECT id, sales_30d
        FROM catalog_items
        WHERE tenant_id = $1 AND in_stock AND price_cents >= $3
        ORDER BY sales_30d DESC, id
        LIMIT $4
    ) b
), wanted AS (
    SELECT unnest($2::text[]) AS id
    UNION
    SELECT id FROM best
)
SELECT i.id, i.title, i.brand, i.url, i.image_url, i.price_cents, i.compare_at_cents, i.currency,
       i.rating, i.reviews, i.categories, coalesce(best.rank, 0)
FROM wanted w
JOIN catalog_items i ON i.tenant_id = $1 AND i.id = w.id
LEFT JOIN best ON best.id = i.id
WHERE i.in_stock
