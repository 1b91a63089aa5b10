-- Creates the tenant or replaces its operator settings; a field left NULL
-- means dispatch's default. xmax = 0 only for a row this statement inserted.
INSERT INTO tenants (id, send_rate, daily_cap, providers, updated_at)
VALUES (@id, @send_rate, @daily_cap, @providers, now())
ON CONFLICT (id) DO UPDATE SET
    send_rate = excluded.send_rate,
    daily_cap = excluded.daily_cap,
    providers = excluded.providers,
    updated_at = excluded.updated_at
RETURNING id, state, send_rate, daily_cap, providers, created_at, updated_at, state_changed_at, xmax = 0
