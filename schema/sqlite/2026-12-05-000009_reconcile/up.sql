-- Nightly reconciliation (issue 15). Kept type-for-type in step with the other backend's
-- migration (tests/schema.rs).

-- One run of one job for one business day (Asia/Shanghai): what makes a missed night run at the
-- next start, and a finished one not run again unless asked. job: bills_wechat,
-- bills_alipay. status: running → done | waiting (the platform's bill is not out
-- yet) | failed. summary: the job's figures as JSON.
CREATE TABLE reconcile_runs (
    job          TEXT NOT NULL,
    day          TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    node         TEXT NOT NULL,
    summary      TEXT,
    last_error   TEXT,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP,
    PRIMARY KEY (job, day)
);

-- A platform's bill for a day as downloaded, kept as the evidence behind its cases: the file's
-- bytes (WeChat: the CSV; Alipay: the ZIP), their SHA-256, and the totals the bill states.
CREATE TABLE bill_files (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT NOT NULL,
    day         TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    row_count   BIGINT NOT NULL,
    totals      TEXT,
    raw         BLOB NOT NULL,
    fetched_at  TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX bill_files_content ON bill_files (channel, day, sha256);

-- A bill's rows: kind payment | refund; amount positive for both; out_order_no is Heft's number
-- where Heft knows the trade (Alipay bills show the out_trade_no), else the bill's own.
CREATE TABLE bill_rows (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id         BIGINT NOT NULL REFERENCES bill_files (id),
    channel         TEXT NOT NULL,
    day             TEXT NOT NULL,
    kind            TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    out_order_no    TEXT NOT NULL,
    amount_fen      BIGINT NOT NULL,
    fee_fen         BIGINT NOT NULL,
    status          TEXT NOT NULL,
    at              TIMESTAMP NOT NULL
);
CREATE INDEX bill_rows_day ON bill_rows (channel, day);
CREATE INDEX bill_rows_order ON bill_rows (out_order_no, kind);

-- Where a bill and Heft disagree. subject: the refund for refund cases, the transaction for
-- the others, '' for the day's totals; with channel, day, kind and out_order_no it names the
-- case, so running a day again never opens it twice. status: open → resolved (accept | correct
-- | write_off, with a note and who).
CREATE TABLE bill_cases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    day             TEXT NOT NULL,
    kind            TEXT NOT NULL,
    out_order_no    TEXT NOT NULL,
    subject         TEXT NOT NULL,
    transaction_id  TEXT,
    out_refund_no   TEXT,
    heft_fen        BIGINT,
    bill_fen        BIGINT,
    detail          TEXT NOT NULL,
    file_id         BIGINT REFERENCES bill_files (id),
    status          TEXT NOT NULL,
    resolution      TEXT,
    note            TEXT,
    resolved_by     TEXT,
    created_at      TIMESTAMP NOT NULL,
    resolved_at     TIMESTAMP
);
CREATE UNIQUE INDEX bill_cases_once ON bill_cases (channel, day, kind, out_order_no, subject);
CREATE INDEX bill_cases_status ON bill_cases (status, id);
