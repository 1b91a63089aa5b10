-- The next page of a job's segment audience: subscribed customers whose
-- attributes match the segment's SQL/JSON path predicate $4, in id order
-- after the cursor $2.
SELECT id, email, first_name, last_name, locale
FROM customers
WHERE tenant_id = $1 AND subscribed AND id > $2 AND attributes @@ $4::jsonpath
ORDER BY id
LIMIT $3
