DROP INDEX review_cases_created;
DROP INDEX refunds_finished;
DROP INDEX orders_finished;
DROP INDEX payments_paid;
DROP INDEX payments_trade_no;
DROP INDEX payments_transaction;
