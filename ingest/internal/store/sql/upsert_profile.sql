INSERT INTO tenants (id, name, website_url, logo_url, hero_url, postal_address, default_deadline, updated_at)
VALUES (@tenant, @name, @website_url, @logo_url, @hero_url, @postal_address, make_interval(secs => @default_deadline_seconds), now())
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name,
    website_url = excluded.website_url,
    logo_url = excluded.logo_url,
    hero_url = excluded.hero_url,
    postal_address = excluded.postal_address,
    default_deadline = excluded.default_deadline,
    updated_at = excluded.updated_at
