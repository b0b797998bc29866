-- The purchase flow: orders and their lines, the stock ledger (every change of book stock, with
-- why), restock tasks and review cases. Kept type-for-type in step with the PostgreSQL migration
-- (tests/schema.rs).

-- One scan of one door by one shopper, and what became of it (domain::order::OrderStatus).
-- out_order_no is the pre-authorisation's number on the platform (payments). before_g/after_g:
-- the stable weight of each lane of the door ({"A1": 812.4, ...}) before the door opened and
-- after it closed. notices: what the shopper is told beside the status (JSON array).
CREATE TABLE orders (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    sn             TEXT NOT NULL REFERENCES cabinets (sn),
    door           INTEGER NOT NULL,
    channel        TEXT NOT NULL,
    status         TEXT NOT NULL,
    out_order_no   TEXT NOT NULL UNIQUE REFERENCES payments (out_order_no),
    session_id     BIGINT REFERENCES sessions (id),
    cap_fen        BIGINT NOT NULL,
    total_fen      BIGINT,
    paid_fen       BIGINT,
    debt_fen       BIGINT NOT NULL,
    before_g       TEXT,
    after_g        TEXT,
    notices        TEXT NOT NULL,
    cancel_reason  TEXT,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    authorized_at  TIMESTAMP,
    opened_at      TIMESTAMP,
    closed_at      TIMESTAMP,
    settled_at     TIMESTAMP,
    finished_at    TIMESTAMP
);
-- A shopper stands at one cabinet at a time: at most one order before its settlement.
CREATE UNIQUE INDEX orders_one_open ON orders (user_id)
    WHERE status IN ('created', 'authorized', 'door_open', 'settling');
CREATE INDEX orders_user_created ON orders (user_id, created_at);
CREATE INDEX orders_sn_created ON orders (sn, created_at);
CREATE INDEX orders_status ON orders (status);

-- What an order charges for, one row per lane.
CREATE TABLE order_lines (
    order_id      BIGINT NOT NULL REFERENCES orders (id),
    lane          TEXT NOT NULL,
    product_id    BIGINT NOT NULL,
    product_name  TEXT NOT NULL,
    qty           BIGINT NOT NULL,
    unit_fen      BIGINT NOT NULL,
    amount_fen    BIGINT NOT NULL,
    PRIMARY KEY (order_id, lane)
);

-- Every change of a lane's book stock (lanes.stock), written in the transaction that makes it:
-- reason sale | move | restock | review | maintenance | adjust.
CREATE TABLE stock_ledger (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sn           TEXT NOT NULL,
    lane         TEXT NOT NULL,
    product_id   BIGINT,
    delta        INTEGER NOT NULL,
    stock_after  INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    order_id     BIGINT,
    session_id   BIGINT,
    task_id      BIGINT,
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX stock_ledger_lane ON stock_ledger (sn, lane, id);

-- What to bring to a cabinet: wanted = [{"lane","product_id","qty"}] to fill each lane to
-- capacity; added = what the restocker actually put in, measured by weight. open → in_progress
-- (a restock session holds the cabinet) → done, or cancelled.
CREATE TABLE restock_tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sn          TEXT NOT NULL REFERENCES cabinets (sn),
    status      TEXT NOT NULL,
    wanted      TEXT NOT NULL,
    added       TEXT,
    session_id  BIGINT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    closed_at   TIMESTAMP,
    closed_by   TEXT
);
CREATE UNIQUE INDEX restock_tasks_one_open ON restock_tasks (sn) WHERE status IN ('open', 'in_progress');

-- An order a person must look at: kind weights (the settlement could not read the weights) or
-- appeal (the shopper disputes it). reasons: JSON; resolution: what the person decided.
CREATE TABLE review_cases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     BIGINT NOT NULL REFERENCES orders (id),
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    reasons      TEXT NOT NULL,
    opened_by    TEXT NOT NULL,
    resolution   TEXT,
    resolved_by  TEXT,
    created_at   TIMESTAMP NOT NULL,
    resolved_at  TIMESTAMP
);
CREATE UNIQUE INDEX review_cases_one_open ON review_cases (order_id) WHERE status = 'open';
CREATE INDEX review_cases_status ON review_cases (status, id);
