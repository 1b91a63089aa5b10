-- Tenants may name Amazon SES and SendGrid among their email providers,
-- now that dispatch speaks both ("ses", "sendgrid").

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION herald_valid_providers(p jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(p) = 'object' AND NOT EXISTS (
        SELECT 1 FROM jsonb_each(p) AS c(channel, kinds)
        WHERE jsonb_typeof(c.kinds) <> 'array' OR jsonb_array_length(c.kinds) = 0
           OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(c.kinds) AS k(kind)
               WHERE jsonb_typeof(k.kind) <> 'string'
                  OR (c.channel, k.kind #>> '{}') NOT IN (('email', 'smtp'), ('email', 'esp'), ('email', 'ses'),
                                                          ('email', 'sendgrid'), ('onsite', 'onsite'), ('ad', 'ads'))))
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION herald_valid_providers(p jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(p) = 'object' AND NOT EXISTS (
        SELECT 1 FROM jsonb_each(p) AS c(channel, kinds)
        WHERE jsonb_typeof(c.kinds) <> 'array' OR jsonb_array_length(c.kinds) = 0
           OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(c.kinds) AS k(kind)
               WHERE jsonb_typeof(k.kind) <> 'string'
                  OR (c.channel, k.kind #>> '{}') NOT IN (('email', 'smtp'), ('email', 'esp'), ('onsite', 'onsite'), ('ad', 'ads'))))
$$;
-- +goose StatementEnd
