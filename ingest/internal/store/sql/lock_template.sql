-- Serializes uploads of one template so that concurrent uploads get
-- consecutive versions; held until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('template/' || $1 || '/' || $2, 0))
