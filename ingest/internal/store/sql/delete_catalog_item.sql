DELETE FROM catalog_items WHERE tenant_id = $1 AND id = $2
