-- Every change to a shopper's debt, with the order it came from: positive when debt opens (a
-- refused charge, a basket over the cap, a correction that adds), negative when it is recovered.
-- accounts.debt_fen is their sum per shopper; the daily settlement reads the day's changes.
CREATE TABLE debt_ledger (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    order_id   BIGINT NOT NULL REFERENCES orders (id),
    delta_fen  BIGINT NOT NULL,
    at         TIMESTAMP NOT NULL
);
CREATE INDEX debt_ledger_at ON debt_ledger (at);

-- A business day's figures per cabinet and product, written whole by the settlement job (a day
-- run again is replaced). Money in fen; an order's refunds, fees and debt are shared out over its
-- products in proportion to what each was charged. reviews: review cases opened that day on
-- orders with the product.
CREATE TABLE daily_settlement (
    day                 TEXT NOT NULL,
    sn                  TEXT NOT NULL,
    product_id          BIGINT NOT NULL,
    product_name        TEXT NOT NULL,
    orders              BIGINT NOT NULL,
    units_sold          BIGINT NOT NULL,
    gross_fen           BIGINT NOT NULL,
    refunds_fen         BIGINT NOT NULL,
    fees_fen            BIGINT NOT NULL,
    net_fen             BIGINT NOT NULL,
    debt_opened_fen     BIGINT NOT NULL,
    debt_recovered_fen  BIGINT NOT NULL,
    loss_units          BIGINT NOT NULL,
    loss_fen            BIGINT NOT NULL,
    reviews             BIGINT NOT NULL,
    written_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (day, sn, product_id)
);

-- The day's figures over the whole fleet, orders and review cases each counted once.
CREATE TABLE daily_totals (
    day                 TEXT PRIMARY KEY,
    orders              BIGINT NOT NULL,
    units_sold          BIGINT NOT NULL,
    gross_fen           BIGINT NOT NULL,
    refunds_fen         BIGINT NOT NULL,
    fees_fen            BIGINT NOT NULL,
    net_fen             BIGINT NOT NULL,
    debt_opened_fen     BIGINT NOT NULL,
    debt_recovered_fen  BIGINT NOT NULL,
    loss_units          BIGINT NOT NULL,
    loss_fen            BIGINT NOT NULL,
    reviews             BIGINT NOT NULL,
    written_at          TIMESTAMP NOT NULL
);

-- An order's lines as they stood when it was paid. A review may correct a paid order's lines
-- later; the day's settlement counts what was sold as sold, and the refund on its own day.
CREATE TABLE charged_lines (
    order_id      BIGINT NOT NULL REFERENCES orders (id),
    lane          TEXT NOT NULL,
    product_id    BIGINT NOT NULL,
    product_name  TEXT NOT NULL,
    qty           BIGINT NOT NULL,
    unit_fen      BIGINT NOT NULL,
    amount_fen    BIGINT NOT NULL,
    PRIMARY KEY (order_id, lane)
);
