-- A tenant's own providers per channel, in its order of preference: the
-- first delivers, the next takes over while the one before has its breaker
-- open. {"email": ["esp", "smtp"]} sends the tenant's email through the ESP
-- and falls back to SMTP; channels it does not name use dispatch's order.

-- +goose Up
-- +goose StatementBegin
-- herald_valid_providers accepts an object whose keys are channels and
-- whose values are non-empty lists of provider kinds of that channel.
CREATE FUNCTION herald_valid_providers(p jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(p) = 'object' AND NOT EXISTS (
        SELECT 1 FROM jsonb_each(p) AS c(channel, kinds)
        WHERE jsonb_typeof(c.kinds) <> 'array' OR jsonb_array_length(c.kinds) = 0
           OR EXISTS (
               SELECT 1 FROM jsonb_array_elements(c.kinds) AS k(kind)
               WHERE jsonb_typeof(k.kind) <> 'string'
                  OR (c.channel, k.kind #>> '{}') NOT IN (('email', 'smtp'), ('email', 'esp'), ('onsite', 'onsite'), ('ad', 'ads'))))
$$;
-- +goose StatementEnd
ALTER TABLE tenants ADD COLUMN providers jsonb
    CONSTRAINT tenants_providers_check CHECK (providers IS NULL OR herald_valid_providers(providers));

-- +goose Down
ALTER TABLE tenants DROP COLUMN providers;
DROP FUNCTION herald_valid_providers(jsonb);
