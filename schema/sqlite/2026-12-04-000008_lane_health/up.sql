-- Each lane's load cell, day by day (Asia/Shanghai): its noise and the closed-door drift its
-- baseline followed, for reconciliation and the dashboard to judge the cell by.
CREATE TABLE lane_health (
    sn          TEXT NOT NULL REFERENCES cabinets (sn),
    lane        TEXT NOT NULL,
    day         TEXT NOT NULL,              -- YYYY-MM-DD, Asia/Shanghai
    noise_g     DOUBLE,           -- σ of one reading at rest; NULL until known
    drift_g     DOUBLE NOT NULL,  -- slow drift followed with the door closed
    moves       INTEGER NOT NULL,           -- closed-door moves too fast or large to be drift
    baseline_g  DOUBLE,           -- the tracked weight when last written
    updated_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (sn, lane, day)
);
