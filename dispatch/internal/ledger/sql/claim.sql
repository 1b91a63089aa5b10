-- Claims a chunk of one batch's recipients in the ledger, in one statement:
-- each recipient without a row gets one, decided here and now: skipped (the
-- job's picking rules chose not to message them), failed (it did not
-- render), suppressed (re-checked against the suppression list at
-- this very moment), expired (past the job's deadline), capped (the tenant's
-- daily cap for this recipient, counted in their own time zone across all
-- channels and jobs, is used up) or sending (claimed: the caller may now
-- call the provider). A customer who withdrew their consent for the channel
-- since the audience was planned (herald_has_consent) is suppressed; one
-- without a customers row is left to the other checks. Rows that already exist are left alone (the unique key
-- makes a second claim impossible) and, if this batch owns them, returned
-- with fresh = false so the caller can finish what an earlier attempt
-- started. Final outcomes count toward the job's progress in the same
-- statement. Nobody is claimed unless the job is active: a pause or cancel
-- that commits before this statement stops every later send.
--
-- The chunk comes as parallel arrays (@customer_ids, @emails, …) with its
-- provenance (@strategies, …); @provider is who the claimed rows go to;
-- @quiet_start, @quiet_end and @quiet_mode are the job's quiet hours (start
-- and end minute of the recipient's local day, -1 for none; mode hold or
-- skip): a recipient inside them is deferred until the window ends
-- (not_before) or skipped.
WITH input AS (
    SELECT *
    FROM unnest(@customer_ids::text[], @emails::text[], @message_ids::text[], @render_errors::text[], @skip_reasons::text[],
                @strategies::text[], @model_versions::text[], @catalog_versions::bigint[], @template_versions::integer[])
         AS t(customer_id, email, message_id, render_error, skip_reason,
              strategy, model_version, catalog_version, template_version)
), existing AS (
    -- One key lookup per recipient (see Ledger.Lock on why it is spelled
    -- out this way).
    SELECT d.customer_id, d.state, d.batch_seq, d.provider, d.not_before
    FROM input i
    CROSS JOIN LATERAL (
        SELECT x.customer_id, x.state, x.batch_seq, x.provider, x.not_before
        FROM deliveries x
        WHERE x.tenant_id = @tenant AND x.job_id = @job AND x.channel = @channel
          AND x.customer_id = i.customer_id AND x.job_submitted_at = @submitted_at
        LIMIT 1
    ) d
), local AS (
    SELECT i.*, coalesce(c.timezone, 'UTC') AS tz, now() AT TIME ZONE coalesce(c.timezone, 'UTC') AS local_now,
           c.id IS NULL OR herald_has_consent(c.subscribed, c.consent, @channel) AS consents
    FROM input i
    LEFT JOIN customers c ON c.tenant_id = @tenant AND c.id = i.customer_id
    WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.customer_id = i.customer_id)
), decided AS (
    -- What the job's picking and render decided comes first; then the one
    -- send-eligibility rule (herald_send_verdict), which returns no row
    -- unless the job is active; then consent, which ranks with the
    -- suppression list (a listed address keeps the list's reason).
    SELECT l.customer_id, l.email, l.message_id, l.strategy, l.model_version, l.catalog_version, l.template_version,
           l.local_now::date AS local_day,
           CASE WHEN l.skip_reason <> '' THEN 'skipped'
                WHEN l.render_error <> '' THEN 'failed'
                WHEN NOT l.consents AND v.state <> 'suppressed' THEN 'suppressed'
                ELSE v.state END AS state,
           CASE WHEN l.skip_reason <> '' THEN l.skip_reason
                WHEN l.render_error <> '' THEN 'render: ' || l.render_error
                WHEN NOT l.consents AND v.state <> 'suppressed' THEN 'no consent for ' || @channel
                ELSE v.reason END AS reason,
           CASE WHEN l.skip_reason = '' AND l.render_error = '' AND l.consents THEN v.not_before END AS not_before
    FROM local l
    CROSS JOIN LATERAL herald_send_verdict(@tenant, @job, l.email, l.local_now, l.tz, @deadline, @quiet_start, @quiet_end, @quiet_mode) v
), capped AS (
    -- Takes one send of each sending recipient's local day; returns those
    -- whose daily cap is used up.
    SELECT c.customer_id, c.daily_cap
    FROM (SELECT array_agg(d.customer_id) AS ids, array_agg(d.local_day) AS days FROM decided d WHERE d.state = 'sending') s
    CROSS JOIN LATERAL herald_take_daily_sends(@tenant, s.ids, s.days) c
), final AS (
    SELECT d.customer_id, d.email, d.message_id, d.strategy, d.model_version, d.catalog_version, d.template_version,
           d.not_before,
           CASE WHEN c.customer_id IS NOT NULL THEN 'capped' ELSE d.state END AS state,
           CASE WHEN c.customer_id IS NOT NULL THEN 'daily cap of ' || c.daily_cap || ' reached' ELSE d.reason END AS reason
    FROM decided d
    LEFT JOIN capped c ON c.customer_id = d.customer_id
), claimed AS (
    INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq,
                            state, email, message_id, attempts, reason, done_at,
                            strategy, model_version, catalog_version, template_version, provider, not_before)
    SELECT @tenant, @job, @channel, f.customer_id, @submitted_at, @seq, f.state, f.email, f.message_id,
           CASE WHEN f.state = 'sending' THEN 1 ELSE 0 END, f.reason,
           CASE WHEN f.state NOT IN ('sending', 'deferred') THEN now() END,
           f.strategy, f.model_version, f.catalog_version, f.template_version,
           CASE WHEN f.state = 'sending' THEN @provider ELSE '' END, f.not_before
    FROM final f
    ON CONFLICT DO NOTHING
    RETURNING customer_id, state, provider, not_before
), counted AS (
    INSERT INTO job_progress AS p (tenant_id, job_id, shard, failed, suppressed, expired, capped, skipped, last_done_at)
    SELECT @tenant, @job, @shard,
           count(*) FILTER (WHERE state = 'failed'),
           count(*) FILTER (WHERE state = 'suppressed'),
           count(*) FILTER (WHERE state = 'expired'),
           count(*) FILTER (WHERE state = 'capped'),
           count(*) FILTER (WHERE state = 'skipped'),
           now()
    FROM claimed
    HAVING count(*) FILTER (WHERE state NOT IN ('sending', 'deferred')) > 0
    ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
        failed = p.failed + excluded.failed,
        suppressed = p.suppressed + excluded.suppressed,
        expired = p.expired + excluded.expired,
        capped = p.capped + excluded.capped,
        skipped = p.skipped + excluded.skipped,
        last_done_at = greatest(p.last_done_at, excluded.last_done_at)
)
SELECT customer_id, state, true AS fresh, provider, not_before FROM claimed
UNION ALL
SELECT customer_id, state, false, provider, not_before FROM existing WHERE batch_seq = @seq
