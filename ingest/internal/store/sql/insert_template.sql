-- Adds the next version of a template (run under lock_template).
INSERT INTO templates (tenant_id, id, version, from_name, from_email, subject, preheader, html, text_body)
SELECT @tenant, @id, coalesce(max(version), 0) + 1, @from_name, @from_email, @subject, @preheader, @html, @text_body
FROM templates
WHERE tenant_id = @tenant AND id = @id
RETURNING version, created_at
