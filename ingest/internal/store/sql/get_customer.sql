SELECT id, email, first_name, last_name, locale, timezone, subscribed, consent, attributes, updated_at
FROM customers WHERE tenant_id = $1 AND id = $2
