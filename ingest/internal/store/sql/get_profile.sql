SELECT name, website_url, logo_url, hero_url, postal_address, extract(epoch FROM default_deadline)::float8
FROM tenants WHERE id = $1
