-- A job's template version with the tenant's brand.
SELECT t.from_name, t.from_email, t.subject, t.preheader, t.html, t.text_body,
       coalesce(b.name, ''), coalesce(b.website_url, ''), coalesce(b.logo_url, ''),
       coalesce(b.hero_url, ''), coalesce(b.postal_address, '')
FROM templates t
LEFT JOIN tenants b ON b.id = t.tenant_id
WHERE t.tenant_id = $1 AND t.id = $2 AND t.version = $3
