-- A customer's onsite messages that have not expired, newest first, marked
-- seen as they are read (herald_read_onsite_inbox: the inbox is dispatch's).
-- $1 tenant, $2 customer, $3 at most this many.
SELECT delivery_key, job_id, payload, created_at, expires_at, seen
FROM herald_read_onsite_inbox($1, $2, $3)
