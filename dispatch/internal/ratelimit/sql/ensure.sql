-- Creates a bucket or updates its configured ceiling, keeping a current
-- rate that throttling has cut below the new ceiling.
INSERT INTO rate_buckets (name, rate, max_rate, min_rate, burst, tokens)
VALUES ($1, $2, $2, $3, $4, $4)
ON CONFLICT (name) DO UPDATE SET
    max_rate = excluded.max_rate,
    min_rate = excluded.min_rate,
    burst = excluded.burst,
    rate = least(rate_buckets.rate, excluded.max_rate)
