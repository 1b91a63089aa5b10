-- The tenant's catalog version (none: 0).
SELECT coalesce((SELECT version FROM catalog_versions WHERE tenant_id = $1), 0)
