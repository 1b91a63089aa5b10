-- A bounce sent to a VERP return path names its delivery only by the hash
-- in the delivery's Message-ID (bounce+<hash and MAC>@<return domain>):
-- the key itself does not fit in an address. Ingest, which receives the
-- bounce, finds the delivery by that hash through the function below.
--
-- The index. deliveries.message_id is "<32 hex digits>@<domain>"; the hash
-- is all the return path carries (the Message-ID domain is dispatch's
-- setting), so the index is on its first 32 characters. It is a hash index:
-- the lookup is by equality only, and a hash index keeps a 4-byte hash code
-- per row where a B-tree keeps the 32-character key, which matters on a
-- table of billions of rows (bytes per row measured in perf/README.md).
-- PostgreSQL 15 builds a non-unique index of any access method on a
-- partitioned table and creates it on each new partition. Rows without a
-- Message-ID (every channel but email) are left out.
--
-- Applying this to a database with large partitions builds the index on
-- each of them under a lock that blocks writes; on such a database build
-- it per partition with CREATE INDEX CONCURRENTLY first and attach them.

-- +goose Up
CREATE INDEX deliveries_message_hash ON deliveries USING hash (left(message_id, 32)) WHERE message_id <> '';

-- +goose StatementBegin
-- herald_delivery_by_message_id returns the key of the delivery whose
-- Message-ID starts with _hash (32 lower-case hex digits), or no row. The
-- hash is of the whole key, so two deliveries share one only by a 128-bit
-- collision; the newest is taken then. The caller checks the MAC of the
-- return path before it calls: an address no delivery was sent from never
-- costs a lookup. (Owner: dispatch; ingest calls it for bounces.)
CREATE FUNCTION herald_delivery_by_message_id(_hash text)
RETURNS TABLE (tenant_id text, job_id uuid, channel text, customer_id text) LANGUAGE sql STABLE AS $$
    SELECT d.tenant_id, d.job_id, d.channel, d.customer_id
    FROM deliveries d
    WHERE left(d.message_id, 32) = _hash AND d.message_id <> ''
    ORDER BY d.job_submitted_at DESC
    LIMIT 1
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_delivery_by_message_id(text);
DROP INDEX deliveries_message_hash;
