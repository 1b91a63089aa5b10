-- What providers report after a send: delivered, bounced (hard or soft),
-- complained. Each report comes with the delivery's ledger key, so it lands
-- on exactly one delivery, and with the provider's own event id, so a report
-- delivered twice (every provider retries its webhooks) changes nothing the
-- second time. Dispatch owns the ledger, so it owns these rules; the
-- services that receive reports call herald_apply_feedback.

-- +goose Up
-- The last thing a provider said about the delivery after the send ('' for
-- nothing yet), and when. A plain column with a constant default, so adding
-- it rewrites no partition; herald_apply_feedback is its only writer and
-- checks the kind.
ALTER TABLE deliveries
    ADD COLUMN feedback    text NOT NULL DEFAULT '',
    ADD COLUMN feedback_at timestamptz;

-- Every report applied, by the provider's event id. (Owner: dispatch.)
CREATE TABLE feedback_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    tenant_id   text NOT NULL,
    job_id      uuid NOT NULL,
    channel     text NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX feedback_events_received_at ON feedback_events (received_at);

-- Soft bounces in a row per address: a transient refusal (mailbox full,
-- greylisted) is no reason to stop mailing an address, but a run of them
-- is. A delivery to the address ends the run. (Owner: dispatch.)
CREATE TABLE soft_bounces (
    tenant_id text NOT NULL,
    email     text NOT NULL,
    run       integer NOT NULL,
    last_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, email)
);

-- +goose StatementBegin
-- herald_apply_feedback applies one provider report to its delivery and
-- says what it did:
--   'applied'    the report is recorded (and acted on);
--   'duplicate'  this provider's event id was applied before: nothing changed;
--   'unknown'    no delivery has this key, or it was never handed to a
--                provider (suppressed, expired, capped…): nothing changed.
-- A report proves the provider took the message, so an ambiguous delivery
-- (the send's outcome was unknown) is settled as sent and the job's counts
-- move with it. A hard bounce or a complaint suppresses the address
-- (herald_suppress, ingest's rule); soft bounces count, and _soft_limit in a
-- row suppress it as a bounce. The delivery's feedback only ever rises:
-- soft_bounce < delivered < bounced < complained, so reports that arrive out
-- of order leave the gravest. The delivery row is locked first, so two
-- reports of one delivery apply one after the other.
CREATE FUNCTION herald_apply_feedback(_provider text, _event_id text, _tenant text, _job uuid, _channel text,
                                      _customer text, _kind text, _soft_limit integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d      record;
    rank   constant text[] := ARRAY['soft_bounce', 'delivered', 'bounced', 'complained'];
    run    integer;
BEGIN
    IF NOT _kind = ANY (rank) THEN
        RAISE EXCEPTION 'feedback kind % is not one of %', _kind, rank USING ERRCODE = '22023';
    END IF;
    SELECT l.job_submitted_at, l.state, l.email, l.feedback INTO d
    FROM deliveries l
    JOIN jobs j ON j.tenant_id = l.tenant_id AND j.id = l.job_id AND j.submitted_at = l.job_submitted_at
    WHERE l.tenant_id = _tenant AND l.job_id = _job AND l.channel = _channel AND l.customer_id = _customer
    FOR UPDATE OF l;
    IF NOT FOUND OR d.state NOT IN ('sending', 'sent', 'ambiguous') THEN
        RETURN 'unknown';
    END IF;
    INSERT INTO feedback_events (provider, event_id, tenant_id, job_id, channel, customer_id, kind)
    VALUES (_provider, _event_id, _tenant, _job, _channel, _customer, _kind)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;

    UPDATE deliveries
    SET state = CASE WHEN state = 'ambiguous' THEN 'sent' ELSE state END,
        reason = CASE WHEN state = 'ambiguous' THEN 'settled by ' || _provider || ' ' || _kind ELSE reason END,
        feedback = CASE WHEN array_position(rank, _kind) > coalesce(array_position(rank, feedback), 0)
                        THEN _kind ELSE feedback END,
        feedback_at = now()
    WHERE tenant_id = _tenant AND job_id = _job AND channel = _channel AND customer_id = _customer
      AND job_submitted_at = d.job_submitted_at;
    IF d.state = 'ambiguous' THEN
        -- The counters are sharded; the job's sums are what readers see, so
        -- any shard still holding an ambiguous count gives one up.
        UPDATE job_progress p
        SET ambiguous = p.ambiguous - 1, sent = p.sent + 1
        WHERE (p.tenant_id, p.job_id, p.shard) = (
            SELECT q.tenant_id, q.job_id, q.shard FROM job_progress q
            WHERE q.tenant_id = _tenant AND q.job_id = _job AND q.ambiguous > 0
            ORDER BY q.shard LIMIT 1);
    END IF;

    CASE _kind
    WHEN 'bounced' THEN
        PERFORM herald_suppress(_tenant, ARRAY[d.email], ARRAY['bounce']);
        DELETE FROM soft_bounces WHERE tenant_id = _tenant AND email = lower(d.email);
    WHEN 'complained' THEN
        PERFORM herald_suppress(_tenant, ARRAY[d.email], ARRAY['complaint']);
    WHEN 'delivered' THEN
        DELETE FROM soft_bounces WHERE tenant_id = _tenant AND email = lower(d.email);
    WHEN 'soft_bounce' THEN
        INSERT INTO soft_bounces AS s (tenant_id, email, run, last_at)
        VALUES (_tenant, lower(d.email), 1, now())
        ON CONFLICT (tenant_id, email) DO UPDATE SET run = s.run + 1, last_at = now()
        RETURNING s.run INTO run;
        IF run >= _soft_limit THEN
            PERFORM herald_suppress(_tenant, ARRAY[d.email], ARRAY['bounce']);
        END IF;
    END CASE;
    RETURN 'applied';
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_erase_delivery_addresses now also forgets the soft bounces of the
-- erased customer's addresses: a run of them is about the address, which
-- the ledger no longer holds.
CREATE OR REPLACE FUNCTION herald_erase_delivery_addresses(_tenant text, _customer text)
RETURNS bigint LANGUAGE sql AS $$
    WITH forgotten AS (
        DELETE FROM soft_bounces b
        USING deliveries d
        WHERE d.tenant_id = _tenant AND d.customer_id = _customer AND d.email <> ''
          AND b.tenant_id = _tenant AND b.email = lower(d.email)
    ), scrubbed AS (
        UPDATE deliveries d SET email = ''
        WHERE d.tenant_id = _tenant AND d.customer_id = _customer AND d.done_at IS NOT NULL AND d.email <> ''
        RETURNING 1
    )
    SELECT count(*) FROM scrubbed
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION herald_erase_delivery_addresses(_tenant text, _customer text)
RETURNS bigint LANGUAGE sql AS $$
    WITH scrubbed AS (
        UPDATE deliveries d SET email = ''
        WHERE d.tenant_id = _tenant AND d.customer_id = _customer AND d.done_at IS NOT NULL AND d.email <> ''
        RETURNING 1
    )
    SELECT count(*) FROM scrubbed
$$;
-- +goose StatementEnd
DROP FUNCTION herald_apply_feedback(text, text, text, uuid, text, text, text, integer);
DROP TABLE soft_bounces;
DROP TABLE feedback_events;
ALTER TABLE deliveries DROP COLUMN feedback_at, DROP COLUMN feedback;
