SELECT send_rate FROM tenants WHERE id = $1
