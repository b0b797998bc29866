-- Messages that must not be lost (the outbox, and what each consumer has already handled),
-- shoppers and their accounts, and payments (one pre-authorisation per row, with every callback
-- the platforms sent). Kept type-for-type in step with the other backend's migration.

-- Written in the same transaction as the change that causes the message. The relay delivers
-- rows whose next_attempt_at has come: status pending → done (RabbitMQ confirmed it, or the
-- in-process handler succeeded) or dead (failed max_attempts times; an alert is raised).
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT NOT NULL UNIQUE,
    topic            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    deliver_at       TIMESTAMP NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  TIMESTAMP NOT NULL,
    last_error       TEXT,
    done_at          TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- A consumer records the message id in the same transaction as its effect, so a message
-- delivered twice (relay restarted before marking it done, broker redelivery) acts once.
CREATE TABLE consumed_messages (
    consumer     TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    consumed_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- A shopper, as one platform knows them: channel 'wechat' (openid) or 'alipay' (user id).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    channel        TEXT NOT NULL,
    platform_uid   TEXT NOT NULL,
    unionid        TEXT,
    created_at     TIMESTAMP NOT NULL,
    last_login_at  TIMESTAMP NOT NULL,
    UNIQUE (channel, platform_uid)
);

-- Created with the user, in the same transaction. channels: the payment channels bound
-- (comma-separated, e.g. 'wechat_payscore'); debt_fen: unpaid amounts; blocked: may not buy.
CREATE TABLE accounts (
    user_id         BIGINT PRIMARY KEY REFERENCES users (id),
    channels        TEXT NOT NULL,
    debt_fen        BIGINT NOT NULL,
    blocked         BOOLEAN NOT NULL,
    blocked_reason  TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);

-- One pre-authorisation (WeChat Pay Score service order / Alipay fund-auth freeze) and what
-- became of it: created → authorized → capturing → paid, or cancelled.
CREATE TABLE payments (
    out_order_no       TEXT PRIMARY KEY,
    channel            TEXT NOT NULL,
    user_id            BIGINT NOT NULL REFERENCES users (id),
    state              TEXT NOT NULL,
    cap_fen            BIGINT NOT NULL,
    amount_fen         BIGINT,
    platform_order_id  TEXT,
    payer_id           TEXT,
    out_trade_no       TEXT,
    transaction_id     TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);

-- Every verified callback, stored before it is applied; a duplicate (same platform event id)
-- is answered with success and not applied again. raw: the body exactly as received (WeChat's
-- encrypted envelope, Alipay's form); resource: what it says (decrypted / decoded).
CREATE TABLE payment_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    channel       TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    out_order_no  TEXT,
    resource      TEXT NOT NULL,
    raw           TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    received_at   TIMESTAMP NOT NULL,
    UNIQUE (channel, event_id)
);
CREATE INDEX payment_events_order ON payment_events (out_order_no);
