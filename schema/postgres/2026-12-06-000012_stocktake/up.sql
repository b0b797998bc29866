-- The nightly stocktake by weight: one row per lane per business day (a day run again finds its
-- lanes done and changes nothing). status: agrees | differs | unreadable; night_g the lane's
-- closed-door rest net of drift, taken_at when it was read; trace the weighed sessions and the
-- decision, as JSON, for the operator who reads it.
CREATE TABLE stocktake_lanes (
    id          BIGSERIAL PRIMARY KEY,
    day         TEXT NOT NULL,
    sn          TEXT NOT NULL,
    lane        TEXT NOT NULL,
    product_id  BIGINT,
    status      TEXT NOT NULL,
    unreadable  TEXT,
    book        INTEGER NOT NULL,
    implied     INTEGER,
    difference  INTEGER NOT NULL,
    night_g     DOUBLE PRECISION,
    taken_at    TIMESTAMP NOT NULL,
    trace       TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX stocktake_lanes_day ON stocktake_lanes (day, sn, lane);
CREATE INDEX stocktake_lanes_lane ON stocktake_lanes (sn, lane, day);

-- What explains a lane's difference: units signed as the shelf moved against the book, their
-- value at the product's price, the session (and for a shopper the order and user) it is put
-- down to; charged_fen what the shopper was charged for it (as debt on the order).
CREATE TABLE stock_findings (
    id            BIGSERIAL PRIMARY KEY,
    stocktake_id  BIGINT NOT NULL REFERENCES stocktake_lanes (id),
    day           TEXT NOT NULL,
    sn            TEXT NOT NULL,
    lane          TEXT NOT NULL,
    product_id    BIGINT,
    kind          TEXT NOT NULL,
    units         INTEGER NOT NULL,
    value_fen     BIGINT NOT NULL,
    charged_fen   BIGINT NOT NULL,
    session_id    BIGINT,
    order_id      BIGINT,
    user_id       BIGINT,
    from_at       TIMESTAMP,
    to_at         TIMESTAMP,
    from_g        DOUBLE PRECISION,
    to_g          DOUBLE PRECISION
);
CREATE INDEX stock_findings_day ON stock_findings (day, sn);

-- What the stocktake reads a cabinet at a time: a session's order (also what a settlement looks
-- up), and the book changes since a moment.
CREATE INDEX orders_session ON orders (session_id);
CREATE INDEX stock_ledger_sn_created ON stock_ledger (sn, created_at);
