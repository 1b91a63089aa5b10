-- Creates or replaces one of a tenant's catalog triggers.
INSERT INTO catalog_triggers (tenant_id, kind, channel, template_id, template_version, lookback, min_drop_percent, deadline)
VALUES (@tenant, @kind, @channel, @template_id, @template_version, make_interval(secs => @lookback_seconds), @min_drop_percent, make_interval(secs => @deadline_seconds::double precision))
ON CONFLICT (tenant_id, kind) DO UPDATE
SET channel = EXCLUDED.channel, template_id = EXCLUDED.template_id, template_version = EXCLUDED.template_version,
    lookback = EXCLUDED.lookback, min_drop_percent = EXCLUDED.min_drop_percent, deadline = EXCLUDED.deadline,
    updated_at = now()
