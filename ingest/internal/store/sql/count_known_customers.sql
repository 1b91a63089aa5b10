-- Returns the requested ids that are not customers of the tenant.
SELECT x.id
FROM unnest($2::text[]) AS x(id)
LEFT JOIN customers c ON c.tenant_id = $1 AND c.id = x.id
WHERE c.id IS NULL
ORDER BY x.id
LIMIT 20
