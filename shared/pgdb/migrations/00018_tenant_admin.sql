-- Tenants are made and suspended by operators through ingest's operator API
-- (/v1/ops/tenants), no longer on a partner's first request. A suspended
-- tenant's requests are refused and its active jobs are paused; dispatch
-- reads send_rate, daily_cap and providers as before. Tenants that exist
-- already stay active.

-- +goose Up
ALTER TABLE tenants ADD COLUMN state text NOT NULL DEFAULT 'active'
    CONSTRAINT tenants_state_check CHECK (state IN ('active', 'suspended'));
-- When an operator last suspended or resumed the tenant.
ALTER TABLE tenants ADD COLUMN state_changed_at timestamptz;

-- +goose Down
ALTER TABLE tenants DROP COLUMN state_changed_at;
ALTER TABLE tenants DROP COLUMN state;
