-- The delivery whose Message-ID carries @hash, through dispatch's function:
-- a bounce to a VERP return path names its delivery by nothing else.
SELECT tenant_id, job_id, channel, customer_id FROM herald_delivery_by_message_id(@hash)
