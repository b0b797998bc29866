-- Operators, the catalogue, cabinet configuration (types, lanes, calibration), sessions (the
-- device lock, and what the weight log and commands belong to), commands with their acks, and
-- the weight log. Kept type-for-type in step with the PostgreSQL migration (tests/schema.rs).

CREATE TABLE operators (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    active         BOOLEAN NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    last_login_at  TIMESTAMP
);

-- What a kind of cabinet can do: how many load-cell channels its controller has, and the
-- temperature range its goods need (out of range for longer than temp_alert_after_s → alert).
CREATE TABLE cabinet_types (
    name                TEXT PRIMARY KEY,
    sensor_channels     INTEGER NOT NULL,
    temp_min_c          DOUBLE NOT NULL,
    temp_max_c          DOUBLE NOT NULL,
    temp_alert_after_s  BIGINT NOT NULL,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL
);
INSERT INTO cabinet_types VALUES
    ('standard', 32, -10.0, 45.0, 1800, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
    ('fridge', 32, 2.0, 10.0, 900, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);

-- config_version counts saved configurations; config_acked_version is the last one the cabinet
-- acknowledged. The same pair for the shelf labels (price tags).
ALTER TABLE cabinets ADD COLUMN address TEXT;
ALTER TABLE cabinets ADD COLUMN config_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cabinets ADD COLUMN config_acked_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cabinets ADD COLUMN tags_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cabinets ADD COLUMN tags_acked_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE products (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    barcode      TEXT NOT NULL UNIQUE,
    unit_g       DOUBLE NOT NULL,
    tolerance_g  DOUBLE NOT NULL,
    price_fen    BIGINT NOT NULL,
    image_url    TEXT,
    active       BOOLEAN NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);

-- One lane of one door: a load-cell channel under a row of one product. Calibration turns the
-- channel's raw counts into grams: g = (counts - zero_counts) / counts_per_g.
CREATE TABLE lanes (
    sn             TEXT NOT NULL REFERENCES cabinets (sn),
    code           TEXT NOT NULL,
    door           INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    name           TEXT NOT NULL,
    channel        INTEGER NOT NULL,
    capacity       INTEGER NOT NULL,
    threshold      INTEGER NOT NULL,
    product_id     BIGINT REFERENCES products (id),
    stock          INTEGER NOT NULL,
    zero_counts    BIGINT,
    counts_per_g   DOUBLE,
    calibrated_at  TIMESTAMP,
    PRIMARY KEY (sn, code)
);
CREATE INDEX lanes_product ON lanes (product_id);

-- A session holds the cabinet (the device lock): at most one open per cabinet, across nodes.
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT NOT NULL REFERENCES cabinets (sn),
    kind        TEXT NOT NULL,
    door        INTEGER,
    started_by  TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    ended_at    TIMESTAMP,
    outcome     TEXT,
    detail      TEXT
);
CREATE UNIQUE INDEX sessions_open ON sessions (sn) WHERE ended_at IS NULL;
CREATE INDEX sessions_sn_started ON sessions (sn, started_at);

-- Every command sent to a cabinet and how it ended: acked, failed (the cabinet said no) or
-- timed_out (no ack after the retries).
CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    sn           TEXT NOT NULL REFERENCES cabinets (sn),
    kind         TEXT NOT NULL,
    session_id   BIGINT REFERENCES sessions (id),
    body         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    error        TEXT,
    result       TEXT,
    created_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP
);
CREATE INDEX commands_sn_created ON commands (sn, created_at);

-- The weight log (重量流水): closed-door readings and session traces, written in batches. No
-- foreign keys: it is append-only and the hottest table, and its rows are evidence that must
-- outlive any change to the rows they name.
CREATE TABLE weight_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sn           TEXT NOT NULL,
    session_id   BIGINT,
    kind         TEXT NOT NULL,
    recorded_at  TIMESTAMP NOT NULL,
    device_ts    BIGINT,
    counts       TEXT NOT NULL,
    grams        TEXT
);
CREATE INDEX weight_log_sn_recorded ON weight_log (sn, recorded_at);
CREATE INDEX weight_log_session ON weight_log (session_id) WHERE session_id IS NOT NULL;
