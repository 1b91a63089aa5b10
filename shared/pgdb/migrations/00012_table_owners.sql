-- Every table has one owning service (docs/adr/0006-table-owners.md). A
-- service writes another's table only through a function the owner defines
-- here, so each rule about a table is written once, by its owner: how a
-- suppression is added, who may send now, how a batch finishes or parks,
-- how failures are re-driven, how an inbox is read, how an address leaves
-- the ledger. The job totals every reader sums are one view.

-- +goose Up
-- +goose StatementBegin
-- herald_recipient_suppression reports whether a suppression's reason came
-- from the recipient (an unsubscribe, a complaint). Such a suppression
-- outlives anything the partner does: a later reason does not replace it
-- and the partner cannot lift it. (Owner: ingest.)
CREATE FUNCTION herald_recipient_suppression(reason text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT reason IN ('unsubscribed', 'complaint')
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_suppress adds addresses to a tenant's suppression list, each with
-- its reason (parallel arrays). An address already listed keeps its row,
-- unless the new reason is the recipient's and the old one is not: then the
-- recipient's reason replaces it. Repeating a call changes nothing. Returns
-- how many rows were added or changed. (Owner: ingest; dispatch calls it
-- for hard bounces.)
CREATE FUNCTION herald_suppress(_tenant text, _emails text[], _reasons text[])
RETURNS bigint LANGUAGE sql AS $$
    WITH written AS (
        INSERT INTO suppressions AS s (tenant_id, email, reason)
        SELECT _tenant, lower(e.email), e.reason
        FROM unnest(_emails, _reasons) AS e(email, reason)
        ON CONFLICT (tenant_id, email) DO UPDATE SET reason = excluded.reason
        WHERE NOT herald_recipient_suppression(s.reason) AND herald_recipient_suppression(excluded.reason)
        RETURNING 1
    )
    SELECT count(*) FROM written
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_send_verdict decides whether one recipient of a job may be sent to
-- now: suppressed (the tenant's list, then the global one, '*': addresses
-- no tenant may mail, such as spam traps), expired (past the deadline),
-- skipped or deferred (inside quiet hours in the recipient's time zone,
-- local_now, by the job's mode), else sending. It returns no row unless the
-- job is active: a pause or cancel that commits before the calling
-- statement stops every later send. The daily cap is the caller's next
-- step (herald_take_daily_sends), since it takes a send. Written as one
-- STABLE SELECT so that the planner inlines it into the calling statement.
-- (Owner: dispatch; the claim and the retry of deferred rows call it.)
CREATE FUNCTION herald_send_verdict(_tenant text, _job uuid, _email text, _local_now timestamp, _tz text,
                                    _deadline timestamptz, _quiet_start integer, _quiet_end integer, _quiet_mode text)
RETURNS TABLE (state text, reason text, not_before timestamptz) LANGUAGE sql STABLE AS $$
    SELECT CASE
               WHEN s.reason IS NOT NULL THEN 'suppressed'
               WHEN now() > _deadline THEN 'expired'
               WHEN herald_in_quiet_hours(_local_now, _quiet_start, _quiet_end) AND _quiet_mode = 'skip' THEN 'skipped'
               WHEN herald_in_quiet_hours(_local_now, _quiet_start, _quiet_end) THEN 'deferred'
               ELSE 'sending'
           END,
           CASE
               WHEN s.reason IS NOT NULL THEN s.reason
               WHEN now() > _deadline THEN 'deadline passed before sending'
               WHEN herald_in_quiet_hours(_local_now, _quiet_start, _quiet_end) AND _quiet_mode = 'skip'
                   THEN 'quiet hours in the recipient''s time zone'
               WHEN herald_in_quiet_hours(_local_now, _quiet_start, _quiet_end)
                   THEN 'held for quiet hours in the recipient''s time zone'
               ELSE ''
           END,
           CASE WHEN s.reason IS NULL AND now() <= _deadline AND _quiet_mode <> 'skip'
                     AND herald_in_quiet_hours(_local_now, _quiet_start, _quiet_end)
                THEN herald_quiet_hours_end(_local_now, _tz, _quiet_end) END
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (
        SELECT x.reason FROM suppressions x
        WHERE x.tenant_id IN (_tenant, '*') AND x.email = lower(_email)
        ORDER BY x.tenant_id = '*'
        LIMIT 1
    ) s ON true
    WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = _tenant AND j.id = _job AND j.state = 'active')
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_take_daily_sends takes one send of each recipient's local day
-- (parallel arrays of customer ids and days) against the tenant's daily
-- cap, and returns the recipients whose cap is used up, with the cap. A
-- tenant without a cap takes nothing and returns nothing. The row lock of
-- ON CONFLICT makes concurrent jobs count right. (Owner: dispatch.)
CREATE FUNCTION herald_take_daily_sends(_tenant text, _customers text[], _days date[])
RETURNS TABLE (customer_id text, daily_cap integer) LANGUAGE sql AS $$
    WITH cap AS (
        SELECT t.daily_cap FROM tenants t WHERE t.id = _tenant AND t.daily_cap IS NOT NULL
    ), wanted AS (
        SELECT w.customer_id, w.day FROM unnest(_customers, _days) AS w(customer_id, day)
    ), used AS (
        INSERT INTO recipient_day_counts AS rc (tenant_id, customer_id, day, sends)
        SELECT _tenant, w.customer_id, w.day, 1
        FROM wanted w, cap
        ON CONFLICT (tenant_id, customer_id, day) DO UPDATE SET sends = rc.sends + 1
        WHERE rc.sends < (SELECT c.daily_cap FROM cap c)
        RETURNING rc.customer_id
    )
    SELECT w.customer_id, cap.daily_cap
    FROM wanted w, cap
    WHERE NOT EXISTS (SELECT 1 FROM used u WHERE u.customer_id = w.customer_id)
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_finish_batch marks a planned batch done once every recipient in
-- it has a final ledger row, whichever copy of whichever batch claimed it,
-- and wakes the releaser (the batch's slot in the window is free). A part
-- of a batch that render had to split finishes it only together with the
-- other parts. Returns whether it finished the batch. (Owner: ingest;
-- dispatch calls it after recording a chunk.)
CREATE FUNCTION herald_finish_batch(_tenant text, _job uuid, _channel text, _submitted timestamptz, _seq bigint)
RETURNS boolean LANGUAGE sql AS $$
    WITH finished AS (
        UPDATE job_batches b
        SET done_at = now()
        WHERE b.tenant_id = _tenant AND b.job_id = _job AND b.seq = _seq AND b.done_at IS NULL
          AND NOT EXISTS (
              SELECT 1
              FROM unnest(b.customer_ids) AS c(id)
              -- One primary-key probe per recipient (a correlated scalar
              -- subquery, whatever the statistics say): a join here was
              -- planned against a fresh partition's stale statistics as a
              -- scan of the job's whole ledger per recipient, quadratic in
              -- the job's size. A recipient without a row is not final.
              WHERE coalesce((
                  SELECT d.state FROM deliveries d
                  WHERE d.tenant_id = _tenant AND d.job_id = _job AND d.channel = _channel
                    AND d.job_submitted_at = _submitted AND d.customer_id = c.id), 'sending') IN ('sending', 'deferred'))
        RETURNING 1
    )
    SELECT count(*) > 0 FROM (SELECT pg_notify('herald_batches', '') FROM finished LIMIT 1) woke
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_park_batch sets a batch aside while only retries are left in it
-- (see job_batches), with the time to publish it again if it holds
-- recipients for their quiet hours (_resume_at, or NULL), and wakes the
-- releaser: its slot in the window is free. (Owner: ingest; dispatch calls
-- it.)
CREATE FUNCTION herald_park_batch(_tenant text, _job uuid, _seq bigint, _resume_at timestamptz)
RETURNS boolean LANGUAGE sql AS $$
    WITH parked AS (
        UPDATE job_batches b
        SET parked_at = coalesce(b.parked_at, now()),
            resume_at = CASE WHEN _resume_at IS NULL THEN b.resume_at
                             ELSE least(coalesce(b.resume_at, _resume_at), _resume_at) END
        WHERE b.tenant_id = _tenant AND b.job_id = _job AND b.seq = _seq AND b.done_at IS NULL
        RETURNING 1
    )
    SELECT count(*) > 0 FROM (SELECT pg_notify('herald_batches', '') FROM parked LIMIT 1) woke
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_redrive_failed_deliveries gives a job's failed recipients another
-- go: each ledger row the provider refused for good (not a render failure:
-- the same template version fails the same way) becomes deferred again and
-- leaves the job's failed count. Dispatch then takes the rows back as it
-- takes any deferred row, through herald_send_verdict. Returns each row's
-- batch. (Owner: dispatch; ingest's re-drive calls it.)
CREATE FUNCTION herald_redrive_failed_deliveries(_tenant text, _job uuid, _submitted timestamptz)
RETURNS SETOF bigint LANGUAGE sql AS $$
    WITH failed AS (
        UPDATE deliveries d
        SET state = 'deferred', reason = 're-driven after: ' || d.reason, done_at = NULL, not_before = NULL
        WHERE d.tenant_id = _tenant AND d.job_id = _job AND d.job_submitted_at = _submitted
          AND d.state = 'failed' AND d.reason NOT LIKE 'render: %'
        RETURNING d.batch_seq
    ), counted AS (
        -- Readers sum the shards, so the lowest shard takes the whole change.
        UPDATE job_progress p
        SET failed = p.failed - (SELECT count(*) FROM failed)
        WHERE p.tenant_id = _tenant AND p.job_id = _job
          AND p.shard = (SELECT min(x.shard) FROM job_progress x WHERE x.tenant_id = _tenant AND x.job_id = _job)
          AND EXISTS (SELECT 1 FROM failed)
    )
    SELECT f.batch_seq FROM failed f
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_read_onsite_inbox returns a customer's onsite messages that have
-- not expired, newest first, at most _limit, and marks them seen as they
-- are read; seen says whether one had been seen before. (Owner: dispatch,
-- which stores them as it delivers; ingest's inbox API calls it.)
CREATE FUNCTION herald_read_onsite_inbox(_tenant text, _customer text, _limit integer)
RETURNS TABLE (delivery_key text, job_id uuid, payload jsonb, created_at timestamptz, expires_at timestamptz, seen boolean)
LANGUAGE sql AS $$
    WITH inbox AS (
        SELECT m.tenant_id, m.customer_id, m.delivery_key
        FROM onsite_messages m
        WHERE m.tenant_id = _tenant AND m.customer_id = _customer AND m.expires_at > now()
        ORDER BY m.created_at DESC
        LIMIT _limit
    ), marked AS (
        UPDATE onsite_messages m
        SET seen_at = now()
        FROM inbox i
        WHERE m.tenant_id = i.tenant_id AND m.customer_id = i.customer_id AND m.delivery_key = i.delivery_key
          AND m.seen_at IS NULL
        RETURNING m.delivery_key
    )
    SELECT m.delivery_key, m.job_id, m.payload, m.created_at, m.expires_at, m.seen_at IS NOT NULL
    FROM onsite_messages m
    JOIN inbox i ON m.tenant_id = i.tenant_id AND m.customer_id = i.customer_id AND m.delivery_key = i.delivery_key
    ORDER BY m.created_at DESC
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_erase_delivery_addresses scrubs an erased customer's address from
-- the finished rows of the delivery ledger: the ledger keeps that a message
-- was sent, not to whom. Returns how many rows it scrubbed. (Owner:
-- dispatch; ingest's erasure calls it.)
CREATE FUNCTION herald_erase_delivery_addresses(_tenant text, _customer text)
RETURNS bigint LANGUAGE sql AS $$
    WITH scrubbed AS (
        UPDATE deliveries d SET email = ''
        WHERE d.tenant_id = _tenant AND d.customer_id = _customer AND d.done_at IS NOT NULL AND d.email <> ''
        RETURNING 1
    )
    SELECT count(*) FROM scrubbed
$$;
-- +goose StatementEnd

-- job_totals is every job's progress: its shards summed, zero where
-- nothing has reached the job yet. Every reader of a job's counts (the job
-- API, the job list, /ops) reads this view, so a new outcome is added in
-- one place; done counts every final outcome. The sums are a correlated
-- subquery per job, so a reader joining a few jobs reads only their shards
-- (a grouped view would sum every job's before the join). (Owner:
-- dispatch, which writes job_progress.)
CREATE VIEW job_totals AS
SELECT j.tenant_id, j.id AS job_id, t.sent, t.failed, t.suppressed, t.expired, t.ambiguous, t.capped, t.skipped,
       t.sent + t.failed + t.suppressed + t.expired + t.ambiguous + t.capped + t.skipped AS done,
       t.first_sent_at, t.last_done_at
FROM jobs j
CROSS JOIN LATERAL (
    SELECT coalesce(sum(p.sent), 0)::bigint AS sent, coalesce(sum(p.failed), 0)::bigint AS failed,
           coalesce(sum(p.suppressed), 0)::bigint AS suppressed, coalesce(sum(p.expired), 0)::bigint AS expired,
           coalesce(sum(p.ambiguous), 0)::bigint AS ambiguous, coalesce(sum(p.capped), 0)::bigint AS capped,
           coalesce(sum(p.skipped), 0)::bigint AS skipped,
           min(p.first_sent_at) AS first_sent_at, max(p.last_done_at) AS last_done_at
    FROM job_progress p
    WHERE p.tenant_id = j.tenant_id AND p.job_id = j.id
) t;

-- +goose Down
DROP VIEW job_totals;
DROP FUNCTION herald_erase_delivery_addresses(text, text);
DROP FUNCTION herald_read_onsite_inbox(text, text, integer);
DROP FUNCTION herald_redrive_failed_deliveries(text, uuid, timestamptz);
DROP FUNCTION herald_park_batch(text, uuid, bigint, timestamptz);
DROP FUNCTION herald_finish_batch(text, uuid, text, timestamptz, bigint);
DROP FUNCTION herald_take_daily_sends(text, text[], date[]);
DROP FUNCTION herald_send_verdict(text, uuid, text, timestamp, text, timestamptz, integer, integer, text);
DROP FUNCTION herald_suppress(text, text[], text[]);
DROP FUNCTION herald_recipient_suppression(text);
