-- The next page of a job's explicit audience ($4: sorted ids) after the
-- cursor $2; customers who unsubscribed since are left out.
SELECT id, email, first_name, last_name, locale
FROM customers
WHERE tenant_id = $1 AND subscribed AND id > $2 AND id = ANY($4::text[])
ORDER BY id
LIMIT $3
