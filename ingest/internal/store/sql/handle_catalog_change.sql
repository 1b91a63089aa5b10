-- Marks a catalog change acted on, with the first job it created (null:
-- nobody was interested, or the tenant has no trigger of its kind).
UPDATE catalog_changes SET handled_at = now(), job_id = $2 WHERE id = $1
