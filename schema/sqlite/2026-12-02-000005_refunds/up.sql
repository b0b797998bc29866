-- Money given back on a paid order, after a person reviewed it (an appeal). out_refund_no is
-- Heft's number for the refund on the platform (WeChat out_refund_no, Alipay out_request_no),
-- the same on every retry. status: requested (written, not sent) → processing (sent; the
-- platform has it or may have it) → succeeded | failed. Kept type-for-type in step with the
-- PostgreSQL migration (tests/schema.rs).
CREATE TABLE refunds (
    out_refund_no  TEXT PRIMARY KEY,
    order_id       BIGINT NOT NULL REFERENCES orders (id),
    out_order_no   TEXT NOT NULL REFERENCES payments (out_order_no),
    case_id        BIGINT REFERENCES review_cases (id),
    amount_fen     BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL,
    refund_id      TEXT,
    last_error     TEXT,
    requested_by   TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    updated_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP
);
CREATE INDEX refunds_order ON refunds (order_id);
