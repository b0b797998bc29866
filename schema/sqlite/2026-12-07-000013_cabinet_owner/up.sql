-- The cluster's fencing token: the epoch of the ownership lease under which the cabinet's state
-- was last written. A node writes for a cabinet only while its epoch is at least this one, and
-- its first write raises it, so a node that lost the lease (crashed, partitioned, paused) cannot
-- write again. See src/db/mod.rs (Db::fenced).
ALTER TABLE cabinets ADD COLUMN owner_epoch BIGINT NOT NULL DEFAULT 0;
