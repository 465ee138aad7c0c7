-- Clearings look up the pending holds of one account; without this index the settle step scanned every pending hold.
CREATE INDEX holds_account_pending ON holds (account_id) WHERE status = 'PENDING';
