INSERT INTO tenants (id, name, website_url, logo_url, hero_url, postal_address, default_deadline, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, make_interval(secs => $7), now())
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    website_url = excluded.website_url,
    logo_url = excluded.logo_url,
    hero_url = excluded.hero_url,
    postal_address = excluded.postal_address,
    default_deadline = excluded.default_deadline,
    updated_at = excluded.updated_at
