-- The months the staged events fall in, whose partitions must exist.
SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
FROM staged_events
