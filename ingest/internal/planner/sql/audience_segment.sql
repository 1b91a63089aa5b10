-- The next page of a job's segment audience: customers who consent to the
-- job's @channel (herald_has_consent) and whose attributes match the
-- segment's SQL/JSON path predicate @segment_path, in id order after the
-- cursor @after.
SELECT id
FROM customers
WHERE tenant_id = @tenant AND herald_has_consent(subscribed, consent, @channel) AND id > @after
  AND attributes @@ @segment_path::jsonpath
ORDER BY id
LIMIT @page_size
