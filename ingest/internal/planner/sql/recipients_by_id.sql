-- Reloads the recipients of a recorded batch.
SELECT id, email, first_name, last_name, locale
FROM customers
WHERE tenant_id = $1 AND id = ANY($2::text[])
ORDER BY id
