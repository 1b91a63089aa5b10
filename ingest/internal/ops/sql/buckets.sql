-- Every rate bucket: its current rate against its ceiling, and when the
-- provider last throttled it.
SELECT name, rate, max_rate,
       CASE WHEN throttled_at = '-infinity' THEN NULL
            ELSE extract(epoch FROM now() - throttled_at)::float8 END
FROM rate_buckets
ORDER BY name
