ALTER TABLE sessions DROP COLUMN evidence;
