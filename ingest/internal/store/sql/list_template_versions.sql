SELECT version, created_at FROM templates WHERE tenant_id = $1 AND id = $2 ORDER BY version DESC LIMIT $3
