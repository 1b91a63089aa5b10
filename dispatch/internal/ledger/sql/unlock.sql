-- Releases a batch's lock and restores the session's planner settings
-- before the connection goes back to the pool.
SELECT pg_advisory_unlock($1),
       set_config('enable_hashjoin', 'on', false),
       set_config('enable_mergejoin', 'on', false)
