-- What one batch's customers did: the distinct items they bought, viewed
-- and put in their cart, each with the last time, latest first. Each kind
-- has its own window ('infinity' leaves a kind out); views and carts are
-- capped per customer so one heavy browser cannot swamp the batch.
-- Purchases are not capped: every one counts for "never an item bought".
-- $1 tenant, $2 customer ids, $3 purchases since, $4 views since,
-- $5 add-to-carts since, $6 cap on views and carts per customer.
SELECT customer_id, kind, item_id, last_at
FROM (
    SELECT customer_id, kind, item_id, max(occurred_at) AS last_at,
           row_number() OVER (PARTITION BY customer_id, kind ORDER BY max(occurred_at) DESC, item_id) AS rn
    FROM events
    WHERE tenant_id = $1 AND customer_id = ANY($2::text[])
      AND occurred_at >= least($3::timestamptz, $4::timestamptz, $5::timestamptz)
      AND occurred_at >= CASE kind WHEN 'purchase' THEN $3::timestamptz
                                   WHEN 'view' THEN $4::timestamptz
                                   ELSE $5::timestamptz END
    GROUP BY customer_id, kind, item_id
) a
WHERE kind = 'purchase' OR rn <= $6
ORDER BY customer_id, kind, last_at DESC, item_id
