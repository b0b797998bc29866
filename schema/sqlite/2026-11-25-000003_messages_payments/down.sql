DROP TABLE payment_events;
DROP TABLE payments;
DROP TABLE accounts;
DROP TABLE users;
DROP TABLE consumed_messages;
DROP TABLE outbox;
