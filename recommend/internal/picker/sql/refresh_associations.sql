-- Recomputes one tenant's associations of one kind unless another worker is
-- doing it right now (then it returns -1) or did it since $6. Run in a
-- transaction: the advisory lock is held until it ends.
-- $1 tenant, $2 kind, $3 events since, $4 items per customer, $5 related
-- items kept per item, $6 fresh if computed after.
SELECT CASE
    WHEN NOT pg_try_advisory_xact_lock(hashtextextended('herald_item_associations:' || $1 || ':' || $2, 0)) THEN -1
    WHEN EXISTS (SELECT 1 FROM item_association_runs
                 WHERE tenant_id = $1 AND kind = $2 AND computed_at > $6) THEN 0
    ELSE herald_refresh_item_associations($1, $2, $3, $4, $5)
END
