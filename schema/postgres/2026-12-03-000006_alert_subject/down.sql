DROP INDEX alerts_open;
ALTER TABLE alerts DROP COLUMN subject;
CREATE UNIQUE INDEX alerts_open ON alerts (code, COALESCE(sn, '')) WHERE resolved_at IS NULL;
