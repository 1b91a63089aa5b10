-- Merges the staged customers of one upload; the last line for an id wins.
INSERT INTO customers AS c (tenant_id, id, email, first_name, last_name, locale, timezone, subscribed, consent,
                            attributes, updated_at)
SELECT DISTINCT ON (id) $1, id, email, first_name, last_name, locale, timezone, subscribed, consent, attributes, now()
FROM staged_customers
ORDER BY id, line DESC
ON CONFLICT (tenant_id, id) DO UPDATE SET
    email = excluded.email,
    first_name = excluded.first_name,
    last_name = excluded.last_name,
    locale = excluded.locale,
    timezone = excluded.timezone,
    subscribed = excluded.subscribed,
    consent = excluded.consent,
    attributes = excluded.attributes,
    updated_at = excluded.updated_at
