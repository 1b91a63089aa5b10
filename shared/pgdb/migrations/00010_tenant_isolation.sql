-- One tenant cannot hold up another's catalog-change jobs.
--
-- A job's idempotency key belongs to whoever asked for the job: the partner
-- (its Idempotency-Key header) or a catalog change (the key ingest makes
-- from the change). Keys are unique per tenant and origin, so no key a
-- partner sends can ever meet one of a catalog change's jobs. The jobs
-- catalog changes made before are recognised by their request hash, which
-- is the hash of their key.

-- +goose Up
ALTER TABLE jobs ADD COLUMN origin text NOT NULL DEFAULT 'partner' CHECK (origin IN ('partner', 'catalog_change'));
UPDATE jobs SET origin = 'catalog_change'
WHERE idempotency_key LIKE 'catalog-change-%' AND request_sha256 = sha256(convert_to(idempotency_key, 'UTF8'));
ALTER TABLE jobs DROP CONSTRAINT jobs_tenant_id_idempotency_key_key,
    ADD CONSTRAINT jobs_idempotency_key UNIQUE (tenant_id, origin, idempotency_key);

-- +goose Down
-- Fails where a partner's key and a catalog change's meet: the old schema
-- cannot hold both jobs.
ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key;
ALTER TABLE jobs DROP COLUMN origin, ADD CONSTRAINT jobs_tenant_id_idempotency_key_key UNIQUE (tenant_id, idempotency_key);
