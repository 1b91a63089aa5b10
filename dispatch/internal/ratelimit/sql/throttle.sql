-- Halves a bucket's rate (not below its floor) and restarts its cooldown;
-- at most once a second, so a burst of refusals counts as one signal.
UPDATE rate_buckets
SET rate = greatest(min_rate, rate / 2), throttled_at = clock_timestamp(), tokens = least(tokens, 0)
WHERE name = $1 AND throttled_at < clock_timestamp() - interval '1 second'
RETURNING rate
