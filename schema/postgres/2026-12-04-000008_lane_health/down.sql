DROP TABLE lane_health;
