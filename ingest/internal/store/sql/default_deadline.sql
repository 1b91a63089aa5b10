SELECT coalesce((SELECT extract(epoch FROM default_deadline) FROM tenants WHERE id = $1), 14400)::float8
