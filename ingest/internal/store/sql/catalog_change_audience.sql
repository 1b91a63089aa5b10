-- The customers interested in a catalog change (see
-- herald_catalog_change_audience), in id order.
SELECT customer_id FROM herald_catalog_change_audience($1, make_interval(secs => $2), $3)
