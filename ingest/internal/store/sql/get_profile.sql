-- A tenant has a profile once its partner has put one: every profile has a
-- website, while a tenant an operator has just created has none.
SELECT name, website_url, logo_url, hero_url, postal_address, extract(epoch FROM default_deadline)::float8
FROM tenants WHERE id = $1 AND website_url <> ''
