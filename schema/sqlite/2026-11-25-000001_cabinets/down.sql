DROP TABLE alerts;
DROP TABLE cabinet_events;
DROP TABLE cabinets;
