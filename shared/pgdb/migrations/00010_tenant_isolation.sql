-- One tenant cannot hold up another's catalog-change jobs.
--
-- A job's idempotency key belongs to whoever asked for the job: the partner
-- (its Idempotency-Key header) or a catalog change (the key ingest makes
-- from the change). Keys are unique per tenant and origin, so no key a
-- partner sends can ever meet one of a catalog change's jobs. The jobs
-- catalog changes made before are recognised by their request hash, which
-- is the hash of their key.
--
-- A catalog change that cannot be acted on is retried later (retry_at) and,
-- once the error is one that will recur or has done so too often, parked:
-- kept with its reason (last_error) and taken no more, so that the changes
-- behind it go ahead. To try a parked change again once its cause is fixed:
--   UPDATE catalog_changes SET parked_at = NULL, retry_at = NULL, attempts = 0 WHERE id = …;
-- Ingest takes the tenants' changes in turn (catalog_changes_due), so one
-- tenant's backlog does not keep another's waiting either.

-- +goose Up
ALTER TABLE jobs ADD COLUMN origin text NOT NULL DEFAULT 'partner' CHECK (origin IN ('partner', 'catalog_change'));
UPDATE jobs SET origin = 'catalog_change'
WHERE idempotency_key LIKE 'catalog-change-%' AND request_sha256 = sha256(convert_to(idempotency_key, 'UTF8'));
ALTER TABLE jobs DROP CONSTRAINT jobs_tenant_id_idempotency_key_key,
    ADD CONSTRAINT jobs_idempotency_key UNIQUE (tenant_id, origin, idempotency_key);

ALTER TABLE catalog_changes
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN retry_at   timestamptz,
    ADD COLUMN parked_at  timestamptz;
DROP INDEX catalog_changes_pending;
CREATE INDEX catalog_changes_due ON catalog_changes (tenant_id, id) WHERE handled_at IS NULL AND parked_at IS NULL;

-- +goose Down
DROP INDEX catalog_changes_due;
CREATE INDEX catalog_changes_pending ON catalog_changes (id) WHERE handled_at IS NULL;
ALTER TABLE catalog_changes DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN retry_at, DROP COLUMN parked_at;
-- Fails where a partner's key and a catalog change's meet: the old schema
-- cannot hold both jobs.
ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key;
ALTER TABLE jobs DROP COLUMN origin, ADD CONSTRAINT jobs_tenant_id_idempotency_key_key UNIQUE (tenant_id, idempotency_key);
