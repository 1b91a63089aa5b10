SELECT state FROM tenants WHERE id = $1
