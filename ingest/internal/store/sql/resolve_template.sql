-- The version a job will use: the one asked for, or the latest when $3 is 0.
SELECT version
FROM templates
WHERE tenant_id = $1 AND id = $2 AND ($3 = 0 OR version = $3)
ORDER BY version DESC
LIMIT 1
