-- Merges the staged catalog items of one upload; the last line for an id wins.
INSERT INTO catalog_items AS i (tenant_id, id, title, brand, url, image_url, price_cents, compare_at_cents,
                                currency, in_stock, sales_30d, rating, reviews, categories, updated_at)
SELECT DISTINCT ON (id) $1, id, title, brand, url, image_url, price_cents, compare_at_cents,
       currency, in_stock, sales_30d, rating, reviews, categories, now()
FROM staged_catalog_items
ORDER BY id, line DESC
ON CONFLICT (tenant_id, id) DO UPDATE SET
    title = excluded.title,
    brand = excluded.brand,
    url = excluded.url,
    image_url = excluded.image_url,
    price_cents = excluded.price_cents,
    compare_at_cents = excluded.compare_at_cents,
    currency = excluded.currency,
    in_stock = excluded.in_stock,
    sales_30d = excluded.sales_30d,
    rating = excluded.rating,
    reviews = excluded.reviews,
    categories = excluded.categories,
    updated_at = excluded.updated_at
