-- A tenant's catalog triggers, by kind.
SELECT kind, channel, template_id, template_version, extract(epoch FROM lookback)::double precision,
       min_drop_percent, extract(epoch FROM deadline)::double precision
FROM catalog_triggers
WHERE tenant_id = $1
ORDER BY kind
