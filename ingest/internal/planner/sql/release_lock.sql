-- One releaser at a time across ingest replicas, for the transaction.
SELECT pg_try_advisory_xact_lock(hashtextextended('herald-release', 0))
