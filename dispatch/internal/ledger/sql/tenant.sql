-- The tenant's dispatch settings: its send rate (null: unlimited) and its
-- providers per channel in order of preference (null: dispatch's order).
SELECT send_rate, providers FROM tenants WHERE id = $1
