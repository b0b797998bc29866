DROP TABLE review_cases;
DROP TABLE restock_tasks;
DROP TABLE stock_ledger;
DROP TABLE order_lines;
DROP TABLE orders;
