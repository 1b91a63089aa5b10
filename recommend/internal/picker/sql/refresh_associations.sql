-- Recomputes one tenant's associations of one kind unless another worker is
-- doing it right now (then it returns -1) or did it since @fresh_after.
-- Run in a transaction: the advisory lock is held until it ends.
SELECT CASE
    WHEN NOT pg_try_advisory_xact_lock(hashtextextended('herald_item_associations:' || @tenant || ':' || @kind, 0)) THEN -1
    WHEN EXISTS (SELECT 1 FROM item_association_runs
                 WHERE tenant_id = @tenant AND kind = @kind AND computed_at > @fresh_after) THEN 0
    ELSE herald_refresh_item_associations(@tenant, @kind, @events_since, @items_per_customer, @related_per_item)
END
