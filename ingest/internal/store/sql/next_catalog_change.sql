-- The oldest catalog change that is due of the first tenant after @after
-- (in tenant id order) that has one, locked for this session's transaction
-- (another ingest replica takes the next one), with the tenant's trigger of
-- its kind if it has one. Asking again with this tenant as @after takes
-- the tenants in turn, so one tenant's backlog never keeps another's
-- changes waiting; parked changes and those waiting to be retried are
-- passed over. catalog_changes_due holds the due changes in this order.
SELECT c.id, c.tenant_id, c.item_id, c.kind, c.changed_at, c.attempts,
       t.channel, t.template_id, t.template_version, extract(epoch FROM t.lookback)::double precision,
       t.min_drop_percent, extract(epoch FROM t.deadline)::double precision
FROM catalog_changes c
LEFT JOIN catalog_triggers t ON t.tenant_id = c.tenant_id AND t.kind = c.kind
WHERE c.handled_at IS NULL AND c.parked_at IS NULL AND c.tenant_id > @after
  AND (c.retry_at IS NULL OR c.retry_at <= now())
ORDER BY c.tenant_id, c.id
LIMIT 1
FOR UPDATE OF c SKIP LOCKED
