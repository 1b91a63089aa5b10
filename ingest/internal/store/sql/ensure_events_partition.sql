SELECT herald_ensure_events_partition($1)
