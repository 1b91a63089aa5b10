-- The next page of a job's explicit audience (@customer_ids: sorted ids)
-- after the cursor @after; customers who withdrew their consent to the
-- job's @channel since (herald_has_consent) are left out.
SELECT id
FROM customers
WHERE tenant_id = @tenant AND herald_has_consent(subscribed, consent, @channel) AND id > @after
  AND id = ANY(@customer_ids::text[])
ORDER BY id
LIMIT @page_size
