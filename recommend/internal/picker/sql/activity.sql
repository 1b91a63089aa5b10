-- What one batch's customers did: the distinct items they bought, viewed
-- and put in their cart, each with the last time, latest first. Each kind
-- has its own window ('infinity' leaves a kind out); views and carts are
-- capped per customer so one heavy browser cannot swamp the batch.
-- Purchases are not capped: every one counts for "never an item bought".
-- @touches_cap caps views and carts per customer.
SELECT customer_id, kind, item_id, last_at
FROM (
    SELECT customer_id, kind, item_id, max(occurred_at) AS last_at,
           row_number() OVER (PARTITION BY customer_id, kind ORDER BY max(occurred_at) DESC, item_id) AS rn
    FROM events
    WHERE tenant_id = @tenant AND customer_id = ANY(@customers::text[])
      AND occurred_at >= least(@purchases_since::timestamptz, @views_since::timestamptz, @carts_since::timestamptz)
      AND occurred_at >= CASE kind WHEN 'purchase' THEN @purchases_since::timestamptz
                                   WHEN 'view' THEN @views_since::timestamptz
                                   ELSE @carts_since::timestamptz END
    GROUP BY customer_id, kind, item_id
) a
WHERE kind = 'purchase' OR rn <= @touches_cap
ORDER BY customer_id, kind, last_at DESC, item_id
