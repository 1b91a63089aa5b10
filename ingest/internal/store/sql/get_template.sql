-- A version of a template ($3 = 0: the latest).
SELECT id, version, from_name, from_email, subject, preheader, html, text_body, created_at
FROM templates
WHERE tenant_id = $1 AND id = $2 AND ($3 = 0 OR version = $3)
ORDER BY version DESC
LIMIT 1
