-- The oldest catalog change nobody has acted on, locked for this session's
-- transaction (another ingest replica takes the next one), with the
-- tenant's trigger of its kind if it has one.
SELECT c.id, c.tenant_id, c.item_id, c.kind, c.changed_at,
       t.channel, t.template_id, t.template_version, extract(epoch FROM t.lookback)::double precision,
       t.min_drop_percent, extract(epoch FROM t.deadline)::double precision
FROM catalog_changes c
LEFT JOIN catalog_triggers t ON t.tenant_id = c.tenant_id AND t.kind = c.kind
WHERE c.handled_at IS NULL
ORDER BY c.id
LIMIT 1
FOR UPDATE OF c SKIP LOCKED
