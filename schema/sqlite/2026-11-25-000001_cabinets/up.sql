-- Cabinets, their lifecycle/liveness events, and alerts for operators.
-- Times are UTC (TIMESTAMP without zone, by convention). Kept type-for-type in step with the
-- PostgreSQL migration: one schema.rs serves both backends (checked by tests/schema.rs).

CREATE TABLE cabinets (
    sn                  TEXT PRIMARY KEY,
    cabinet_type        TEXT NOT NULL,
    token_hash          TEXT NOT NULL,
    frame_key_sealed    TEXT NOT NULL,
    status              TEXT NOT NULL,
    liveness            TEXT NOT NULL,
    last_boot           BIGINT NOT NULL,
    node_id             TEXT,
    firmware            TEXT,
    lat                 DOUBLE,
    lng                 DOUBLE,
    last_login_at       TIMESTAMP,
    liveness_changed_at TIMESTAMP,
    created_at          TIMESTAMP NOT NULL,
    updated_at          TIMESTAMP NOT NULL
);

CREATE TABLE cabinet_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT NOT NULL REFERENCES cabinets (sn),
    kind        TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT,
    detail      TEXT,
    node_id     TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX cabinet_events_sn_created ON cabinet_events (sn, created_at);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    audience     TEXT NOT NULL,
    severity     TEXT NOT NULL,
    code         TEXT NOT NULL,
    sn           TEXT,
    message      TEXT NOT NULL,
    detail       TEXT,
    occurrences  BIGINT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    resolved_at  TIMESTAMP
);
-- At most one open alert per code and cabinet: raising it again counts an occurrence.
CREATE UNIQUE INDEX alerts_open ON alerts (code, COALESCE(sn, '')) WHERE resolved_at IS NULL;
CREATE INDEX alerts_created ON alerts (created_at);
