-- Consent per channel: a customer is messaged on a channel only with their
-- consent for it, checked when the audience is planned and again when a
-- delivery is claimed.

-- +goose Up
-- +goose StatementBegin
-- herald_has_consent reports whether a customer consents to a job's
-- channel. Email needs subscribed. Onsite needs consent.onsite; a customer
-- the partner recorded nothing about for onsite is taken at their email
-- answer, so that nobody who unsubscribed starts seeing messages they did
-- not ask for. Ads need consent.ads to be true: handing even a hashed
-- address to an ad platform is something the customer must have agreed to,
-- so silence is no. Only JSON true and false count as answers, and a
-- channel this function does not know gets no consent. (Owner: ingest;
-- dispatch's claim re-checks it.)
CREATE FUNCTION herald_has_consent(_subscribed boolean, _consent jsonb, _channel text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE _channel
               WHEN 'email' THEN _subscribed
               WHEN 'onsite' THEN CASE _consent -> 'onsite'
                                      WHEN 'true'::jsonb THEN true
                                      WHEN 'false'::jsonb THEN false
                                      ELSE _subscribed
                                  END
               WHEN 'ad' THEN coalesce(_consent -> 'ads' = 'true'::jsonb, false)
               ELSE false
           END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION herald_has_consent(boolean, jsonb, text);
