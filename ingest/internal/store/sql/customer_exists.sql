SELECT EXISTS (SELECT 1 FROM customers WHERE tenant_id = $1 AND id = $2)
