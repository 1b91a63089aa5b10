-- A cancelled job is never planned further: its planning task goes. A
-- planner holding it loses its lease and stops at its next checkpoint.
DELETE FROM outbox WHERE tenant_id = $1 AND job_id = $2
