-- Waits for a batch's lock, then makes this session plan key lookups as
-- nested loops (see Ledger.Lock).
SELECT pg_advisory_lock($1),
       set_config('enable_hashjoin', 'off', false),
       set_config('enable_mergejoin', 'off', false)
