-- The tenant's best-selling in-stock items: the fallback for customers
-- without (enough) recommendations.
SELECT id, title, brand, url, image_url, price_cents, compare_at_cents, currency, rating, reviews
FROM catalog_items
WHERE tenant_id = $1 AND in_stock
ORDER BY sales_30d DESC, id
LIMIT $2
