-- An alert may be about one thing beside its cabinet (an order, a refund): alerts about two
-- orders at one cabinet are two alerts, each naming its order, not one counting both.
ALTER TABLE alerts ADD COLUMN subject TEXT;
DROP INDEX alerts_open;
CREATE UNIQUE INDEX alerts_open ON alerts (code, COALESCE(sn, ''), COALESCE(subject, '')) WHERE resolved_at IS NULL;
