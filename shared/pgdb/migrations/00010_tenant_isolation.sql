-- One tenant cannot hold up another's catalog-change jobs.
--
-- A job's idempotency key belongs to whoever asked for the job (origin):
-- the partner (its Idempotency-Key, printable ASCII without spaces, as the
-- API takes it) or a catalog change (keys ingest makes with spaces:
-- "catalog change 42"). jobs_key_of_origin keeps the two apart, so no key a
-- partner sends can meet one of a catalog change's jobs under the unique
-- (tenant_id, idempotency_key) that replicas of every version rely on. Jobs
-- that catalog changes made before keep origin 'partner' and their keys.
--
-- A catalog change that cannot be acted on is retried later (retry_at) and,
-- once the error is one that will recur or has done so too often, parked:
-- kept with its reason (last_error) and taken no more, so that the changes
-- behind it go ahead. To try a parked change again once its cause is fixed:
--   UPDATE catalog_changes SET parked_at = NULL, retry_at = NULL, attempts = 0 WHERE id = …;
-- Ingest takes the tenants' changes in turn (catalog_changes_due), so one
-- tenant's backlog does not keep another's waiting either.

-- +goose Up
ALTER TABLE jobs ADD COLUMN origin text NOT NULL DEFAULT 'partner',
    ADD CONSTRAINT jobs_key_of_origin CHECK (
        origin = 'partner' AND strpos(idempotency_key, ' ') = 0
        OR origin = 'catalog_change' AND idempotency_key LIKE 'catalog change %');

ALTER TABLE catalog_changes
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN retry_at   timestamptz,
    ADD COLUMN parked_at  timestamptz;
-- catalog_changes_pending serves the replicas that take the oldest change
-- of all; drop it once none is left.
CREATE INDEX catalog_changes_due ON catalog_changes (tenant_id, id) WHERE handled_at IS NULL AND parked_at IS NULL;

-- +goose Down
DROP INDEX catalog_changes_due;
ALTER TABLE catalog_changes DROP COLUMN attempts, DROP COLUMN last_error, DROP COLUMN retry_at, DROP COLUMN parked_at;
ALTER TABLE jobs DROP COLUMN origin;
