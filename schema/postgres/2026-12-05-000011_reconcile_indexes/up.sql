-- What a night's reconciliation looks things up by, so a day of 300,000 orders is read by index:
-- a bill's rows find their payments by the platform's numbers; the day's paid orders are paged
-- in the order they were paid; refunds and payments no bill shows are found by when they ended.
CREATE INDEX payments_transaction ON payments (transaction_id);
CREATE INDEX payments_trade_no ON payments (out_trade_no);
CREATE INDEX payments_paid ON payments (channel, state, updated_at);
CREATE INDEX orders_finished ON orders (status, finished_at, id);
CREATE INDEX refunds_finished ON refunds (status, finished_at);
CREATE INDEX review_cases_created ON review_cases (created_at);
