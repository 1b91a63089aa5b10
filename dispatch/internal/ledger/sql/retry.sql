-- Takes back the rows of this batch that were deferred on an earlier
-- attempt, deciding each again as the claim would: suppressed if the
-- address was suppressed since (an unsubscribe while it waited) or the
-- customer withdrew their consent for the channel, expired
-- once past the deadline, held (or skipped) inside the recipient's quiet
-- hours, otherwise sending again — for the provider now chosen, since the
-- last one accepted nothing. A row that was never sending (held for quiet
-- hours since its claim) takes a send of the recipient's local day now, or
-- is capped; one that was sending had its send counted then. Rows held
-- until a later time are left as they are. Nothing moves while the job is
-- not active.
-- Returns every deferred row of the batch among @customer_ids with its new
-- state and, if held, until when.
WITH rows AS (
    SELECT x.tableoid AS part, x.ctid AS tid, x.customer_id, x.email, x.reason, x.not_before, x.attempts,
           now() AT TIME ZONE coalesce(c.timezone, 'UTC') AS local_now, coalesce(c.timezone, 'UTC') AS tz,
           c.id IS NULL OR herald_has_consent(c.subscribed, c.consent, @channel) AS consents
    FROM unnest(@customer_ids::text[]) AS i(customer_id)
    CROSS JOIN LATERAL (
        SELECT d.tableoid, d.ctid, d.customer_id, d.email, d.reason, d.not_before, d.attempts
        FROM deliveries d
        WHERE d.tenant_id = @tenant AND d.job_id = @job AND d.channel = @channel AND d.customer_id = i.customer_id
          AND d.job_submitted_at = @submitted_at AND d.batch_seq = @seq AND d.state = 'deferred'
        LIMIT 1
    ) x
    LEFT JOIN customers c ON c.tenant_id = @tenant AND c.id = x.customer_id
), targets AS (
    -- The one send-eligibility rule (herald_send_verdict), which returns no
    -- row unless the job is active, then consent, as in the claim; a row
    -- that stays deferred or goes out keeps its reason.
    SELECT r.part, r.tid, r.customer_id, r.attempts, r.local_now::date AS local_day,
           CASE WHEN NOT r.consents AND v.state <> 'suppressed' THEN 'suppressed' ELSE v.state END AS state,
           CASE WHEN r.consents THEN v.not_before END AS not_before,
           CASE WHEN NOT r.consents AND v.state <> 'suppressed' THEN 'no consent for ' || @channel
                WHEN v.state = 'expired' THEN 'deadline passed while deferred: ' || r.reason
                WHEN v.state IN ('sending', 'deferred') THEN r.reason
                ELSE v.reason
           END AS reason
    FROM rows r
    CROSS JOIN LATERAL herald_send_verdict(@tenant, @job, r.email, r.local_now, r.tz, @deadline, @quiet_start, @quiet_end, @quiet_mode) v
    WHERE r.not_before IS NULL OR r.not_before <= now()
), capped AS (
    -- As in the claim: one send of the recipient's local day, unless the
    -- cap is reached. A row that was sending had its send counted then.
    SELECT c.customer_id, c.daily_cap
    FROM (SELECT array_agg(t.customer_id) AS ids, array_agg(t.local_day) AS days
          FROM targets t WHERE t.state = 'sending' AND t.attempts = 0) s
    CROSS JOIN LATERAL herald_take_daily_sends(@tenant, s.ids, s.days) c
), final AS (
    SELECT t.part, t.tid, t.not_before,
           CASE WHEN c.customer_id IS NOT NULL THEN 'capped' ELSE t.state END AS state,
           CASE WHEN c.customer_id IS NOT NULL THEN 'daily cap of ' || c.daily_cap || ' reached' ELSE t.reason END AS reason
    FROM targets t
    LEFT JOIN capped c ON c.customer_id = t.customer_id
), retried AS (
    UPDATE deliveries d
    SET state = t.state,
        attempts = d.attempts + CASE WHEN t.state = 'sending' THEN 1 ELSE 0 END,
        reason = t.reason,
        done_at = CASE WHEN t.state NOT IN ('sending', 'deferred') THEN now() END,
        provider = CASE WHEN t.state = 'sending' THEN @provider ELSE d.provider END,
        not_before = t.not_before
    FROM final t
    WHERE d.tableoid = t.part AND d.ctid = t.tid AND d.state = 'deferred'
    RETURNING d.customer_id, d.state, d.not_before
), counted AS (
    INSERT INTO job_progress AS p (tenant_id, job_id, shard, suppressed, expired, capped, skipped, last_done_at)
    SELECT @tenant, @job, @shard,
           count(*) FILTER (WHERE state = 'suppressed'),
           count(*) FILTER (WHERE state = 'expired'),
           count(*) FILTER (WHERE state = 'capped'),
           count(*) FILTER (WHERE state = 'skipped'),
           now()
    FROM retried
    HAVING count(*) FILTER (WHERE state NOT IN ('sending', 'deferred')) > 0
    ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET
        suppressed = p.suppressed + excluded.suppressed,
        expired = p.expired + excluded.expired,
        capped = p.capped + excluded.capped,
        skipped = p.skipped + excluded.skipped,
        last_done_at = greatest(p.last_done_at, excluded.last_done_at)
)
SELECT customer_id, state, not_before FROM retried
UNION ALL
SELECT customer_id, 'deferred', not_before FROM rows WHERE not_before > now()
