-- Adds the next version of a template (run under lock_template).
INSERT INTO templates (tenant_id, id, version, from_name, from_email, subject, preheader, html, text_body)
SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8
FROM templates
WHERE tenant_id = $1 AND id = $2
RETURNING version, created_at
