ALTER TABLE cabinets DROP COLUMN owner_epoch;
