-- Records a failed attempt at a catalog change with its reason, and either
-- when to take it again (@retry_at) or, with @park, that it is parked: kept
-- for an operator, and taken no more until one clears parked_at.
UPDATE catalog_changes
SET attempts = attempts + 1, last_error = @reason, retry_at = @retry_at,
    parked_at = CASE WHEN @park::boolean THEN now() END
WHERE id = @id
