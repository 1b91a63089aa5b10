-- The next page of a job's audience of all subscribed customers, in id order
-- after the cursor $2.
SELECT id, email, first_name, last_name, locale
FROM customers
WHERE tenant_id = $1 AND subscribed AND id > $2
ORDER BY id
LIMIT $3
