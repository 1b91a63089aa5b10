-- The next page of a job's audience of all customers who consent to its
-- @channel (herald_has_consent), in id order after the cursor @after.
SELECT id
FROM customers
WHERE tenant_id = @tenant AND herald_has_consent(subscribed, consent, @channel) AND id > @after
ORDER BY id
LIMIT @page_size
