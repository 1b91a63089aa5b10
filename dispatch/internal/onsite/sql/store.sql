-- Puts onsite messages in their customers' inboxes, once per ledger key.
INSERT INTO onsite_messages (tenant_id, customer_id, delivery_key, job_id, payload, expires_at)
SELECT *
FROM unnest(@tenants::text[], @customers::text[], @keys::text[], @jobs::uuid[], @payloads::jsonb[], @expires::timestamptz[])
ON CONFLICT (tenant_id, customer_id, delivery_key) DO NOTHING
