-- The weights a settlement judged, per lane, kept with the session in the settlement's
-- transaction: the evidence survives a crash that loses the weight log's last rows.
ALTER TABLE sessions ADD COLUMN evidence TEXT;
