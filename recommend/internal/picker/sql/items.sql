-- The in-stock items among those a batch's lists name.
SELECT id, title, brand, url, image_url, price_cents, compare_at_cents, currency, rating, reviews
FROM catalog_items
WHERE tenant_id = $1 AND id = ANY($2::text[]) AND in_stock
