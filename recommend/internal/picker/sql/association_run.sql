-- When the tenant's associations of the given kinds were last computed.
SELECT kind, computed_at FROM item_association_runs WHERE tenant_id = $1 AND kind = ANY($2::text[])
