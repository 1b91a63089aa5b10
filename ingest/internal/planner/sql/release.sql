-- Hands a task back at shutdown so another planner takes it at once.
UPDATE outbox SET lease_until = '-infinity' WHERE id = $1 AND lease_owner = $2
